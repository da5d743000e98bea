#!/usr/bin/env bash
# HTTP ceiling figures for `silo serve` on this machine (issue: foundation):
#   - /healthz requests per second over TLS keep-alive (wrk, 2 threads, 32 connections)
#   - new TLS connections per second (wrk with Connection: close: a full
#     handshake per request)
#   - idle RSS of the server, and RSS after the load
# Each load figure is the median of RUNS runs of SECONDS seconds; wrk runs
# beside the server on the same 2 cores, so these are shared-machine figures.
# Usage: bench/http_bench.sh [path/to/silo]   (env: RUNS=5 SECONDS_PER_RUN=5)
set -euo pipefail
SILO=${1:-build/silo}
RUNS=${RUNS:-5}
SECS=${SECONDS_PER_RUN:-5}
command -v wrk >/dev/null || { echo "wrk missing: run scripts/bootstrap.sh" >&2; exit 1; }

DATA=$(mktemp -d /tmp/silo-bench-XXXXXX)
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT
SILO_DATA_DIR=$DATA/d SILO_LISTEN=127.0.0.1:0 SILO_OPERATOR_LISTEN=127.0.0.1:0 SILO_API_RATE_PER_MINUTE=1000000 \
  "$SILO" serve >/dev/null 2>&1 &
PID=$!
for _ in $(seq 100); do [ -f "$DATA/d/platform/server.json" ] && break; sleep 0.1; done
ADDR=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['listen'])" "$DATA/d/platform/server.json")
URL="https://$ADDR/healthz"
sleep 1
IDLE_RSS=$(awk '/VmRSS/{print $2}' /proc/$PID/status)

median() { sort -n | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
rps() { awk '/Requests\/sec/{print $2}'; }

KA=(); NC=()
for i in $(seq "$RUNS"); do
  KA+=("$(wrk -t2 -c32 -d"${SECS}s" "$URL" | rps)")
  NC+=("$(wrk -t2 -c16 -d"${SECS}s" -H 'Connection: close' "$URL" | rps)")
done
LOAD_RSS=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
KA_MED=$(printf '%s\n' "${KA[@]}" | median)
NC_MED=$(printf '%s\n' "${NC[@]}" | median)

printf '| figure | median | runs |\n|---|---|---|\n'
printf '| /healthz req/s, TLS keep-alive (c=32) | %s | %s |\n' "$KA_MED" "${KA[*]}"
printf '| new TLS connections/s (c=16) | %s | %s |\n' "$NC_MED" "${NC[*]}"
printf '| idle RSS (KiB) | %s | 1 |\n' "$IDLE_RSS"
printf '| RSS after load (KiB) | %s | 1 |\n' "$LOAD_RSS"
echo "RESULT healthz_rps=$KA_MED tls_conn_per_s=$NC_MED idle_rss_kb=$IDLE_RSS load_rss_kb=$LOAD_RSS"
