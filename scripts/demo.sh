#!/usr/bin/env bash
# The main job, from a fresh clone: set up (idempotent), start ser_node on the default shipped
# weights, replay the bundled bag of real speech, print /emotion as it arrives, write the timeline.
#   bash scripts/demo.sh [--model cktim|lmu|timnet] [--rate 1.0] [--png PATH]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
set +u
# shellcheck disable=SC1091
. "$ROOT/env.sh"
set -u
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}
exec ser-demo --png "$ROOT/ser_demo_timeline.png" "$@"
