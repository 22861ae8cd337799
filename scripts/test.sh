#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite on the real ROS 2 runtime: bash scripts/test.sh [pytest args]
exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" python -m pytest "$@"
