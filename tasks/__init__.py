"""Prefect tasks: thin wrappers (names, retries, artifacts) over aworld_core calls."""

from aworld_core.prefect_env import apply_prefect_defaults

apply_prefect_defaults()  # before anything imports prefect
