"""Prefect flows: chain the tasks of tasks/ (the recipe, rollout-only, evaluation, GAIA)."""

from aworld_core.prefect_env import apply_prefect_defaults

apply_prefect_defaults()  # before anything imports prefect
