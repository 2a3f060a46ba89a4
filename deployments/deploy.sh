#!/usr/bin/env bash
# Register every deployment in prefect.yaml with the Prefect server at PREFECT_API_URL.
#   PREFECT_API_URL=http://127.0.0.1:4200/api bash deployments/deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PREFECT_API_URL:?set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api after 'prefect server start')}"
PREFECT=.venv/bin/prefect
POOL=${AWORLD_WORK_POOL:-aworld-local}
$PREFECT work-pool inspect "$POOL" >/dev/null 2>&1 || $PREFECT work-pool create "$POOL" --type process
AWORLD_REPO="$(pwd)" $PREFECT --no-prompt deploy --all
