"""Prefect settings this project needs before Prefect is imported (its settings are read once, at import).

Why: on a brand-new machine the first flow run starts Prefect's ephemeral API, which first migrates a
new SQLite database. On two busy cores that takes longer than Prefect's 20 s default, and the run dies
with "Timed out while attempting to connect to ephemeral Prefect API server". Telemetry can never be
sent from these offline machines, and trying only logs errors. A user's own environment wins.
"""

from __future__ import annotations

import os

DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def apply_prefect_defaults() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
