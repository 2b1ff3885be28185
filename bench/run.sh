#!/usr/bin/env bash
# Runs every benchmark of BENCHMARKS.md; results go to bench/results/*.json and stdout.
#
#   sudo bench/run.sh            # all (about 6 minutes on 2 cores)
#   sudo bench/run.sh cp         # only: cp (critical path), costs (probe cost, deadlines,
#                                #   registry load), controller (cargo bench), cluster
#
# Needs root for the network lab (tests/lab/README.md). Uses CARGO_TARGET_DIR if set.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${CARGO_TARGET_DIR:-target}
what=${1:-all}
run() { echo "+ $*" >&2; "$@"; }

if [[ $what == all || $what == cp || $what == costs || $what == cluster ]]; then
  run cargo build --release -j 1
  BIN=$T/release/regcheck
fi
if [[ $what == all || $what == cp ]]; then
  run timeout 900 python3 bench/critical_path.py --regcheck "$BIN" --n 20
fi
if [[ $what == all || $what == costs ]]; then
  run timeout 900 python3 bench/lab_costs.py all --regcheck "$BIN" --n 20
fi
if [[ $what == all || $what == controller ]]; then
  run timeout 1800 cargo bench -j 1 --bench controller
fi
if [[ $what == all || $what == cluster ]]; then
  run timeout 2700 python3 bench/controller_cluster.py --regcheck "$BIN" --checks 200 --lock-wait 900
fi
