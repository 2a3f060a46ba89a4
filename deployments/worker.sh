#!/usr/bin/env bash
# A process worker that runs the deployments' flow runs with this checkout's .venv.
#   PREFECT_API_URL=http://127.0.0.1:4200/api bash deployments/worker.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PREFECT_API_URL:?set PREFECT_API_URL}"
exec .venv/bin/prefect worker start --pool "${AWORLD_WORK_POOL:-aworld-local}" "$@"
