"""Exports of stored runs into other frameworks' dataset formats (verl: :mod:`.verl_format`)."""
