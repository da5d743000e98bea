#!/usr/bin/env bash
# Record API figures for `silo serve` over HTTPS with API tokens (issue:
# records). In one run, next to /healthz:
#   - create, read by id, update, list 50: requests/s and p99, one tenant and
#     TENANTS tenants, with SILO_SYNCHRONOUS=normal; creates again with full
#   - ?at= read p99 with EVENTS events in the tenant, and rebuild speed
#     (bench/records_bench, in process: loading a million events over HTTP
#     would take most of the run)
#   - record rules and expand (bench/rules_bench, in process, on RULES_RECORDS
#     records of which the caller may see 1 %): read by id and list-50 with
#     an @me rule against none, list-50 with ?expand against without
# Every load figure is the median of RUNS runs of SECONDS_PER_RUN seconds
# (wrk, 2 threads, 32 connections, beside the server on the same 2 cores).
# Usage: bench/api_bench.sh [build dir]
#   (env: RUNS=5 SECONDS_PER_RUN=5 TENANTS=20 EVENTS=1000000 RULES_RECORDS=100000)
set -euo pipefail
BUILD=${1:-build}
RUNS=${RUNS:-5}
SECS=${SECONDS_PER_RUN:-5}
TENANTS=${TENANTS:-20}
EVENTS=${EVENTS:-1000000}
HERE=$(cd "$(dirname "$0")" && pwd)
command -v wrk >/dev/null || { echo "wrk missing: run scripts/bootstrap.sh" >&2; exit 1; }

DATA=$(mktemp -d /tmp/silo-bench-XXXXXX)
PID=
stop() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true; PID=; }
trap 'stop; rm -rf "$DATA"' EXIT

start() {  # $1 = full|normal
  rm -rf "$DATA/d"
  SILO_DATA_DIR=$DATA/d SILO_LISTEN=127.0.0.1:0 SILO_OPERATOR_LISTEN=127.0.0.1:0 SILO_API_RATE_PER_MINUTE=1000000 SILO_OPERATOR_ACCESS=allowed \
    SILO_SYNCHRONOUS=$1 "$BUILD/silo" serve >"$DATA/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do [ -f "$DATA/d/platform/server.json" ] && break; sleep 0.1; done
  ADDR=$(/usr/bin/python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['listen'])" "$DATA/d/platform/server.json")
  # Tenants bench0..benchN-1, each with a collection and 100 records b0..b99.
  SILO_DATA_DIR=$DATA/d /usr/bin/python3 - "$BUILD/silo" "$ADDR" "$TENANTS" >"$DATA/tokens" <<'PY'
import datetime, json, subprocess, sys, requests, urllib3
urllib3.disable_warnings()
silo, addr, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
slugs, tokens = [], []
for i in range(n):
    slug = "bench%d" % i
    subprocess.run([silo, "tenant", "create", slug], check=True, capture_output=True)
    tok = subprocess.run([silo, "tenant", "token", slug, "--name", "bench", "--expires",
                          (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"), "--permission", "collections.manage",
                          "--permission", "records.*.create", "--permission", "records.*.read",
                          "--permission", "records.*.update"],
                         check=True, capture_output=True, text=True).stdout.strip()
    s = requests.Session()
    s.verify = False
    s.headers["Authorization"] = "Bearer " + tok
    base = "https://%s/t/%s/api/collections" % (addr, slug)
    s.post(base, verify=False, json={"name": "items", "fields": [
        {"name": "title", "type": "string", "required": True},
        {"name": "n", "type": "integer", "indexed": True}]}).raise_for_status()
    for j in range(100):
        s.post(base + "/items/records", verify=False, json={"id": "b%d" % j, "title": "seed", "n": j}).raise_for_status()
    slugs.append(slug)
    tokens.append(tok)
print(",".join(slugs))
print(",".join(tokens))
PY
  ALL_SLUGS=$(sed -n 1p "$DATA/tokens"); ALL_TOKENS=$(sed -n 2p "$DATA/tokens")
  ONE_SLUG=${ALL_SLUGS%%,*}; ONE_TOKEN=${ALL_TOKENS%%,*}
}

median() { sort -n | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
# run MODE SLUGS TOKENS -> "rps p99_ms"; a run with any non-2xx answer aborts
# the bench (a figure of error answers is no figure).
run() {
  local out
  out=$(MODE=$1 SLUGS=$2 TOKENS=$3 wrk -t2 -c32 -d"${SECS}s" -s "$HERE/lua/records.lua" "https://$ADDR")
  if grep -q 'Non-2xx' <<<"$out"; then
    echo "bench: $1 got error answers:" >&2; echo "$out" >&2; exit 1
  fi
  awk '/Requests\/sec/{r=$2} /^P99_MS/{p=$2} END{print r, p}' <<<"$out"
}

declare -A RPS P99
measure() {  # name mode slugs tokens
  local r=() p=() out
  for _ in $(seq "$RUNS"); do
    out=$(run "$2" "$3" "$4"); r+=("${out% *}"); p+=("${out#* }")
  done
  RPS[$1]=$(printf '%s\n' "${r[@]}" | median)
  P99[$1]=$(printf '%s\n' "${p[@]}" | median)
  RUNS_OF[$1]="${r[*]}"
}
declare -A RUNS_OF

start normal
HZ=()
for _ in $(seq "$RUNS"); do
  HZ+=("$(wrk -t2 -c32 -d"${SECS}s" --latency "https://$ADDR/healthz" | awk '/Requests\/sec/{print $2}')")
done
HEALTHZ=$(printf '%s\n' "${HZ[@]}" | median)
measure read read "$ONE_SLUG" "$ONE_TOKEN"
measure read_many read "$ALL_SLUGS" "$ALL_TOKENS"
measure list list "$ONE_SLUG" "$ONE_TOKEN"
measure update update "$ONE_SLUG" "$ONE_TOKEN"
measure create create "$ONE_SLUG" "$ONE_TOKEN"
measure create_many create "$ALL_SLUGS" "$ALL_TOKENS"
stop
start full
measure create_full create "$ONE_SLUG" "$ONE_TOKEN"
measure update_full update "$ONE_SLUG" "$ONE_TOKEN"
stop

INPROC=$(EVENTS=$EVENTS "$BUILD/records_bench")
RULES=$(RECORDS=${RULES_RECORDS:-100000} ROUNDS=$RUNS "$BUILD/rules_bench")
AT_P99=$(echo "$INPROC" | awk '/^RESULT/{for(i=2;i<=NF;i++){split($i,kv,"=");if(kv[1]=="at_p99_ms")print kv[2]}}')

printf '| figure | req/s (median) | p99 ms (median) | runs (req/s) |\n|---|---|---|---|\n'
printf '| /healthz | %s | | %s |\n' "$HEALTHZ" "${HZ[*]}"
for k in read read_many list update create create_many create_full update_full; do
  printf '| %s | %s | %s | %s |\n' "$k" "${RPS[$k]}" "${P99[$k]}" "${RUNS_OF[$k]}"
done
echo "read/healthz ratio: $(awk -v a="${RPS[read]}" -v b="$HEALTHZ" 'BEGIN{printf "%.2f", a/b}')"
echo "$INPROC" | grep -v '^RESULT'
echo "$RULES"
echo "RESULT healthz_rps=$HEALTHZ read_rps=${RPS[read]} create_rps=${RPS[create]} update_rps=${RPS[update]} list_rps=${RPS[list]} at_p99_ms=$AT_P99"
