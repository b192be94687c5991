#!/usr/bin/env bash
# Install the Debian packages eventlake's servers and tests need, those missing only (root, apt-get):
#   chromium, nodejs, npm         the browser tests (Debian's Chromium, the trackers' bundles from npm)
#   radosgw, ceph-mon, ceph-osd   a real S3 server, Ceph's RADOS gateway (scripts/s3_server.py)
#   haproxy                       the load balancer in front of several ingest nodes (scripts/balancer.py)
#   redis-server                  the ingest nodes' shared state (rate limits, write keys)
#   postgresql                    Dagster's run and event-log storage for a cluster (scripts/postgres_server.py)
# Usage: scripts/debian_packages.sh [all|s3]   (s3: only what `make up LAKE=s3` needs)
set -euo pipefail
want="${1:-all}"
full="" bare=""
need() {  # need COMMAND PACKAGES... : the packages, when COMMAND is missing
  local command="$1"; shift
  command -v "$command" >/dev/null 2>&1 || [ -x "/usr/sbin/$command" ] || echo "$*"
}
# Ceph's packages recommend a whole cluster's tools: without recommends they are ~61 MB.
bare="$bare $(need radosgw radosgw ceph-mon ceph-osd)"
if [ "$want" = all ]; then
  full="$full $(need chromium chromium) $(need npm nodejs npm)"
  bare="$bare $(need haproxy haproxy) $(need redis-server redis-server)"
  [ -x /usr/lib/postgresql/15/bin/initdb ] || bare="$bare postgresql"
fi
if [ -n "${full// /}" ] || [ -n "${bare// /}" ]; then
  apt-get update -qq
  [ -z "${full// /}" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $full >/dev/null
  [ -z "${bare// /}" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $bare >/dev/null
fi
