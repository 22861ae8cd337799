#!/usr/bin/env bash
# Set up (idempotent), enter the environment, and run a command in it on a DDS domain of its own:
#   bash scripts/run.sh COMMAND [ARGS...]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
# colcon's generated setup scripts are not written for `set -u`.
set +u
# shellcheck disable=SC1091
. "$ROOT/env.sh"
set -u
# A random domain unless one is set, so parallel runs on one machine never cross-talk.
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}
echo "[run] ROS_DOMAIN_ID=$ROS_DOMAIN_ID ROS_AUTOMATIC_DISCOVERY_RANGE=$ROS_AUTOMATIC_DISCOVERY_RANGE"
cd "$ROOT"
exec "$@"
