#!/usr/bin/env bash
# The main job, from a fresh clone: set up (idempotent), start ser_node on the default shipped
# weights, replay the bundled bag of real speech, print /emotion as it arrives, write the timeline.
#   bash scripts/demo.sh [--model timnet_egemaps|timnet|cktim|cktim_egemaps|lmu|lmu_egemaps] [--rate 1.0] [--png PATH]
exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" ser-demo --png ser_demo_timeline.png "$@"
