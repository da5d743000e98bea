#!/usr/bin/env bash
# Realtime figures for `silo serve` on this machine (issue 19), in one run,
# the load generator (build/realtime_load, one thread) beside the server on
# the same 2 cores:
#   - the baseline: /healthz req/s over TLS keep-alive (wrk, c=32), same run
#   - deliveries/s with 1,000 TLS WebSocket subscribers on one broadcast
#     channel, 200-byte messages, and the publish-to-delivery p50/p99
#   - the same at 5,000 connections
#   - the others' p99 at 1,000 while one subscriber is stalled (it is closed
#     as a slow consumer once 1 MiB is queued for it)
#   - record create-to-delivery p50/p99 at 1,000 subscribers of records:bench
#     (one create over HTTPS at a time, the next once all saw the last)
#   - connect + authenticate + join per second (full TLS handshakes)
#   - RSS per idle connection, with 10,000 idle connections held
# Each load figure is the median of RUNS runs of SECONDS_PER_RUN seconds.
# Usage: bench/realtime_bench.sh [build dir]   (env: RUNS=3 SECONDS_PER_RUN=5 IDLE=10000)
set -euo pipefail
BUILD=${1:-build}
RUNS=${RUNS:-3}
SECS=${SECONDS_PER_RUN:-5}
IDLE=${IDLE:-10000}
command -v wrk >/dev/null || { echo "wrk missing: run scripts/bootstrap.sh" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

DATA=$(mktemp -d /tmp/silo-rt-bench-XXXXXX)
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; wait 2>/dev/null || true; rm -rf "$DATA"' EXIT
export SILO_DATA_DIR=$DATA/d SILO_LISTEN=127.0.0.1:0 SILO_OPERATOR_LISTEN=127.0.0.1:0 SILO_API_RATE_PER_MINUTE=1000000 SILO_OPERATOR_ACCESS=allowed
CAP=$(( (IDLE > 5000 ? IDLE : 5000) + 200 ))
export SILO_REALTIME_MAX_CONNECTIONS=$CAP SILO_REALTIME_TENANT_CONNECTIONS=$CAP
export SILO_MAX_CONNECTIONS_PER_CLIENT=$((CAP + 100)) SILO_REALTIME_CONNECT_PER_MINUTE=1000000
"$BUILD/silo" serve >/dev/null 2>&1 &
PID=$!
for _ in $(seq 100); do [ -f "$DATA/d/platform/server.json" ] && break; sleep 0.1; done
ADDR=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['listen'])" "$DATA/d/platform/server.json")
PORT=${ADDR##*:}
"$BUILD/silo" tenant create bench --owner-email owner@bench.test >/dev/null
EXPIRES=$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%SZ)
BENCH_TOKEN=$("$BUILD/silo" tenant token bench --name bench --expires "$EXPIRES" \
  --permission 'channels.*.subscribe' --permission 'channels.*.publish' \
  --permission collections.manage --permission records.bench.create --permission records.bench.read)
export BENCH_TOKEN
curl -sfk -o /dev/null -H "Authorization: Bearer $BENCH_TOKEN" -H 'Content-Type: application/json' \
  -d '{"name":"bench","fields":[{"name":"ts","type":"string"}]}' "https://$ADDR/t/bench/api/collections"
LOAD=("$BUILD/realtime_load" --port "$PORT" --slug bench)

median() { sort -n | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
field() { tr ' ' '\n' | awk -F= -v k="$1" '$1==k{print $2}'; }
rss() { awk '/VmRSS/{print $2}' /proc/$PID/status; }

# Idle connections first, on the fresh server (later runs leave freed heap
# behind that new connections would reuse): its RSS before and with IDLE held.
sleep 1
RSS0=$(rss)
coproc HOLD { "${LOAD[@]}" --mode idle --conns "$IDLE"; }
read -r READY _ <&"${HOLD[0]}"
[ "$READY" = READY ] || { echo "idle connections failed" >&2; exit 1; }
sleep 1
RSS1=$(rss)
HELD=$(awk '/silo_realtime_connections/{print $2}' <(curl -s -H "Authorization: Bearer $(cat "$DATA/d/dev/operator.token")" \
  "http://$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['operator_listen'])" "$DATA/d/platform/server.json")/metrics") | tail -1)
exec {HOLD[1]}>&-
wait "$HOLD_PID" 2>/dev/null || true
PER=$(( (RSS1 - RSS0) / IDLE ))

HZ=(); D1=(); P1=(); D5=(); P5=(); PS=(); CJ=(); RL=(); R50=()
for _ in $(seq "$RUNS"); do
  HZ+=("$(wrk -t2 -c32 -d"${SECS}s" "https://$ADDR/healthz" | awk '/Requests\/sec/{print $2}')")
  r=$("${LOAD[@]}" --mode deliver --conns 1000 --seconds "$SECS" | grep RESULT)
  D1+=("$(echo "$r" | field deliveries_per_s)"); P1+=("$(echo "$r" | field p99_ms)")
  r=$("${LOAD[@]}" --mode deliver --conns 1000 --seconds "$SECS" --stall 1 | grep RESULT)
  PS+=("$(echo "$r" | field p99_ms)")
  r=$("${LOAD[@]}" --mode deliver --records 1 --conns 1000 --seconds "$SECS" | grep RESULT)
  RL+=("$(echo "$r" | field p99_ms)"); R50+=("$(echo "$r" | field p50_ms)")
  r=$("${LOAD[@]}" --mode deliver --conns 5000 --seconds "$SECS" | grep RESULT)
  D5+=("$(echo "$r" | field deliveries_per_s)"); P5+=("$(echo "$r" | field p99_ms)")
  r=$("${LOAD[@]}" --mode connect --conns 2000 --parallel 64 | grep RESULT)
  CJ+=("$(echo "$r" | field joins_per_s)")
done



HZ_M=$(printf '%s\n' "${HZ[@]}" | median)
D1_M=$(printf '%s\n' "${D1[@]}" | median)
P1_M=$(printf '%s\n' "${P1[@]}" | median)
PS_M=$(printf '%s\n' "${PS[@]}" | median)
D5_M=$(printf '%s\n' "${D5[@]}" | median)
P5_M=$(printf '%s\n' "${P5[@]}" | median)
CJ_M=$(printf '%s\n' "${CJ[@]}" | median)
RL_M=$(printf '%s\n' "${RL[@]}" | median)
R50_M=$(printf '%s\n' "${R50[@]}" | median)
RATIO=$(awk -v a="$D1_M" -v b="$HZ_M" 'BEGIN{printf "%.2f", a/b}')

printf '| figure | median | runs |\n|---|---|---|\n'
printf '| /healthz req/s, TLS keep-alive (c=32), same run | %s | %s |\n' "$HZ_M" "${HZ[*]}"
printf '| deliveries/s, 1,000 subscribers | %s (%s x /healthz) | %s |\n' "$D1_M" "$RATIO" "${D1[*]}"
printf '| publish-to-delivery p99 ms, 1,000 subscribers | %s | %s |\n' "$P1_M" "${P1[*]}"
printf '| the others p99 ms, one subscriber stalled | %s | %s |\n' "$PS_M" "${PS[*]}"
printf '| record create-to-delivery p50 / p99 ms, 1,000 subscribers | %s / %s | %s |\n' "$R50_M" "$RL_M" "${RL[*]}"
printf '| deliveries/s, 5,000 connections | %s | %s |\n' "$D5_M" "${D5[*]}"
printf '| publish-to-delivery p99 ms, 5,000 | %s | %s |\n' "$P5_M" "${P5[*]}"
printf '| connect+authenticate+join /s | %s | %s |\n' "$CJ_M" "${CJ[*]}"
printf '| idle connections held | %s | 1 |\n' "$HELD"
printf '| server RSS per idle connection (KiB) | %s | 1 |\n' "$PER"
echo "RESULT healthz_rps=$HZ_M deliveries_1000=$D1_M p99_1000_ms=$P1_M p99_stalled_ms=$PS_M deliveries_5000=$D5_M p99_5000_ms=$P5_M joins_per_s=$CJ_M record_p50_ms=$R50_M record_p99_ms=$RL_M idle_held=$HELD rss_per_idle_kb=$PER"
