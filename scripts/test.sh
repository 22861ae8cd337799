#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite on the real ROS 2 runtime.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
# colcon's generated setup scripts are not written for `set -u`.
set +u
# shellcheck disable=SC1091
. "$ROOT/env.sh"
set -u
# Each run gets its own DDS domain so parallel runs on one machine never cross-talk.
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}
echo "[test] ROS_DOMAIN_ID=$ROS_DOMAIN_ID ROS_AUTOMATIC_DISCOVERY_RANGE=$ROS_AUTOMATIC_DISCOVERY_RANGE"
cd "$ROOT"
exec python -m pytest "$@"
