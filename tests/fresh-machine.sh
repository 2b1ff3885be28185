#!/usr/bin/env bash
# Rehearse CI on a fresh machine (issue: "CI is red on a fresh machine"): as root,
#   1. purge every Debian package the test harnesses install (tests/common/debian-packages.tsv),
#      the packaging venv under target/, and the test cluster (cluster.sh down --purge),
#   2. clone the committed HEAD of this repository into a new directory (no target/, no state),
#   3. run `bash .ci/run` there with CI=true, as CI does, and report the time it took and the
#      per-binary test counts.
#
#   tests/fresh-machine.sh [--keep-packages] [--keep-cluster] [WORKDIR]
#
# WORKDIR (default: a new directory under /tmp) receives the clone and the log (ci.log).
# --keep-packages / --keep-cluster skip the corresponding purge (a quicker partial rehearsal).
# The clone uses ../shared beside this repository through REGCHECK_CLUSTER_HOME.
# Destructive for this machine's test packages: do not run it on a machine you care about.
set -euo pipefail
REPO=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
keep_packages=0 keep_cluster=0 work=
for a in "$@"; do
  case "$a" in
    --keep-packages) keep_packages=1 ;;
    --keep-cluster) keep_cluster=1 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) work=$a ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "fresh-machine.sh: needs root (it purges packages)" >&2; exit 2; }
work=${work:-$(mktemp -d /tmp/regcheck-fresh.XXXXXX)}
mkdir -p "$work"
shared=$(cd "$REPO/../shared" && pwd)

if [ "$keep_cluster" = 0 ]; then
  echo "== purge: test cluster (cluster.sh down --purge)"
  REGCHECK_CLUSTER_HOME="$shared/cluster" "$REPO/tests/e2e/cluster.sh" down --purge || true
fi
if [ "$keep_packages" = 0 ]; then
  mapfile -t pkgs < <(python3 "$REPO/tests/common/deps.py" packages all)
  # A fresh machine already has these (its image lists them), and purging them would take
  # other base packages with them (ca-certificates, git's https transport).
  base=" curl openssl iproute2 "
  purge=()
  for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      continue
    elif [[ $base == *" $p "* ]]; then
      echo "   keep $p (part of the fresh machine's image)"
    else
      purge+=("$p")
    fi
  done
  echo "== purge: ${purge[*]:-nothing installed}"
  if [ ${#purge[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${purge[@]}" >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get autoremove --purge -y -qq >/dev/null
  fi
  rm -rf "$REPO"/target/*/packaging-venv "$REPO"/target/packaging-venv
  left=$(python3 "$REPO/tests/common/deps.py" missing all | wc -l)
  echo "   programs of the test harnesses now missing: $left"
fi

echo "== fresh clone of $(git -C "$REPO" rev-parse --short HEAD) into $work/repo"
rm -rf "$work/repo"
git clone -q --no-local "$REPO" "$work/repo"
# CI lays shared/ beside the clone; here the clone points at this repository's neighbour.
ln -sfn "$shared" "$work/shared"

echo "== bash .ci/run (log: $work/ci.log)"
start=$(date +%s)
set +e
(cd "$work/repo" && CI=true bash .ci/run </dev/null) >"$work/ci.log" 2>&1
rc=$?
set -e
secs=$(( $(date +%s) - start ))
echo "== .ci/run exited $rc after ${secs} s"
# Per-binary counts: cargo prints "Running <binary>" then a "test result:" line for each.
awk '/Running (unittests |tests\/)|Doc-tests/ {bin=$2; if ($1=="Doc-tests") bin="doc-tests " $2}
     /^test result:/ {sub(/^test result: /,""); printf "   %-28s %s\n", bin, $0}' "$work/ci.log"
exit "$rc"
