#!/bin/sh
# Runs each fuzz target (or those in $TARGETS) for $1 seconds (default 600), one at a time.
set -u
cd "$(dirname "$0")" || exit 1
T=${1:-600}
python3 seed-session.py
for t in ${TARGETS:-session open update notification route_refresh header stream}; do
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" -- -max_total_time="$T" -print_final_stats=1 > "/tmp/bgp-fuzz-$t.log" 2>&1
  echo "$t rc=$?" >> /tmp/bgp-fuzz-summary.log
done
