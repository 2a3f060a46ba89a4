"""Adapters that run our environments and tools inside other frameworks (verl: :mod:`.verl_agent_loop`)."""
