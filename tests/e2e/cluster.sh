#!/usr/bin/env bash
# Lifecycle of the test cluster used by the end-to-end tests (tests/e2e.rs).
#
#   tests/e2e/cluster.sh setup      build/install the shared test cluster (idempotent; ~150 s cold)
#   tests/e2e/cluster.sh up         setup + start it with the lab network the tests expect:
#                                   bridge address 10.88.0.1 (lab servers bind there), cluster DNS
#                                   and node resolver 10.88.0.1 (the lab's dnsmasq)
#   tests/e2e/cluster.sh status     exit 0 when it is up and ready
#   tests/e2e/cluster.sh kubeconfig print the admin kubeconfig path
#   tests/e2e/cluster.sh down [--wipe]
#
# The cluster scripts live outside the repository: ${REGCHECK_CLUSTER_HOME:-<repo>/../shared/cluster}
# (see its README.md). Needs root. Nothing here is needed for a cluster of your own (kind, k3d):
# point KUBECONFIG at it instead (see tests/e2e/README.md).
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CLUSTER_HOME=${REGCHECK_CLUSTER_HOME:-$REPO/../shared/cluster}
DIR=${REGCHECK_CLUSTER_DIR:-/var/lib/regcheck-cluster}
LAB_IP=10.88.0.1

die() { echo "cluster.sh: $*" >&2; exit 1; }

[ -x "$CLUSTER_HOME/up" ] || die "no test cluster scripts at $CLUSTER_HOME (set REGCHECK_CLUSTER_HOME)"

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup)
    [ "$(id -u)" = 0 ] || die "setup needs root"
    "$CLUSTER_HOME/setup" "$@"
    ;;
  up)
    [ "$(id -u)" = 0 ] || die "up needs root"
    "$CLUSTER_HOME/setup"
    mkdir -p "$DIR/e2e"
    # What pods with dnsPolicy Default and hostNetwork probes get: the lab's dnsmasq only.
    printf 'nameserver %s\n' "$LAB_IP" >"$DIR/e2e/node-resolv.conf"
    "$CLUSTER_HOME/up" --bridge-ip "$LAB_IP" --cluster-dns "$LAB_IP" \
      --node-resolv-conf "$DIR/e2e/node-resolv.conf" "$@"
    ;;
  status)
    "$CLUSTER_HOME/status" "$@"
    ;;
  kubeconfig)
    echo "$DIR/kubeconfig"
    ;;
  down)
    [ "$(id -u)" = 0 ] || die "down needs root"
    "$CLUSTER_HOME/down" "$@"
    ;;
  *)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    [ -z "$cmd" ] || [ "$cmd" = -h ] || [ "$cmd" = --help ] || die "unknown command '$cmd'"
    ;;
esac
