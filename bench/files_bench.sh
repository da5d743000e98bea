#!/usr/bin/env bash
# File figures for `silo serve` on this machine (issue 17):
#   - upload and download of a FILE_MIB file over HTTPS (curl, one stream,
#     streamed from and to disk) in MB/s, against `cp` of the same bytes
#     measured in the same run;
#   - time to first byte of a 1-byte range read in the middle of the file
#     (p50/p99 of RANGE_READS requests; curl's starttransfer minus
#     pretransfer, so the TLS handshake is not counted);
#   - peak RSS of the server during an upload and during a download, minus
#     its RSS before (VmHWM, reset through /proc/<pid>/clear_refs).
#   - the same upload and download against the unencrypted control
#     (bench/files_control.cc: the same HTTPS transport and streaming path,
#     the body written to and read from a plain file, no cipher, no SHA-256,
#     no sniffing, no database), interleaved with the server's runs.
# Each throughput is the median of RUNS runs. curl and the server share the
# 2 cores. Backup and restore of files are measured by `make bench-backup`.
# Usage: bench/files_bench.sh [build-dir]   (env: RUNS=3 FILE_MIB=1024 RANGE_READS=200)
set -euo pipefail
BUILD=${1:-build}
SILO=$BUILD/silo
CONTROL=$BUILD/files_control
RUNS=${RUNS:-3}
MIB=${FILE_MIB:-1024}
READS=${RANGE_READS:-200}
command -v curl >/dev/null || { echo "curl missing: run scripts/bootstrap.sh" >&2; exit 1; }

DATA=$(mktemp -d /tmp/silo-files-bench-XXXXXX)
trap 'exec 9>&- 2>/dev/null || true; kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT
export SILO_DATA_DIR=$DATA/d SILO_LISTEN=127.0.0.1:0 SILO_OPERATOR_LISTEN=127.0.0.1:0 SILO_API_RATE_PER_MINUTE=1000000 SILO_OPERATOR_ACCESS=allowed
export SILO_TENANT_FILE_QUOTA_BYTES=0 SILO_UPLOAD_EXPIRE_HOURS=24
"$SILO" serve >"$DATA/server.log" 2>&1 &
PID=$!
for _ in $(seq 100); do [ -f "$DATA/d/platform/server.json" ] && break; sleep 0.1; done
ADDR=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['listen'])" "$DATA/d/platform/server.json")
"$SILO" tenant create bench >/dev/null
TOKEN=$("$SILO" tenant token bench --name bench --permission collections.manage \
  --permission 'records.*.create' --permission 'records.*.read' \
  --expires "$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)")
BASE="https://$ADDR/t/bench/api"
# The control, on the server's development certificate; it stops when its
# stdin (fd 9) closes.
mkdir -p "$DATA/control"
exec 9> >("$CONTROL" "$DATA/control" "$DATA/d/dev/tls.crt" "$DATA/d/dev/tls.key" \
  >"$DATA/control.port" 2>"$DATA/control.log")
for _ in $(seq 100); do grep -q listening "$DATA/control.port" 2>/dev/null && break; sleep 0.1; done
CONTROL_URL="https://127.0.0.1:$(awk '{print $2}' "$DATA/control.port")/control"
AUTH="Authorization: Bearer $TOKEN"
curl -skf -H "$AUTH" -H 'Content-Type: application/json' -o /dev/null "$BASE/collections" \
  -d '{"name":"docs","fields":[{"name":"blob","type":"file","max_bytes":1099511627776,"max_files":100}]}'

head -c "$((MIB * 1024 * 1024))" /dev/urandom >"$DATA/file"
SIZE=$(stat -c %s "$DATA/file")
sync

median() { sort -n | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
mbps() { awk -v b="$SIZE" -v s="$1" 'BEGIN{printf "%.0f", b / s / 1e6}'; }
hwm_reset() { echo 5 >/proc/$PID/clear_refs; }
hwm_kib() { awk '/VmHWM/{print $2}' /proc/$PID/status; }
rss_kib() { awk '/VmRSS/{print $2}' /proc/$PID/status; }

CP=(); UP=(); DOWN=(); UP_RSS=(); DOWN_RSS=(); CUP=(); CDOWN=()
IDS=()
for i in $(seq "$RUNS"); do
  rm -f "$DATA/copy"; sync
  t0=$(date +%s.%N); cp "$DATA/file" "$DATA/copy"; sync; t1=$(date +%s.%N)
  CP+=("$(mbps "$(awk -v a="$t1" -v b="$t0" 'BEGIN{print a - b}')")")
  rm -f "$DATA/copy"
  before=$(rss_kib); hwm_reset
  out=$(curl -sk -H "$AUTH" -H 'Content-Type: application/octet-stream' -X POST -T "$DATA/file" \
    -w '\n%{time_total}' "$BASE/files?collection=docs&field=blob&name=bench.bin")
  UP+=("$(mbps "$(echo "$out" | tail -1)")")
  UP_RSS+=("$(( $(hwm_kib) - before ))")
  IDS+=("$(echo "$out" | head -1 | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')")
  t=$(curl -skf -H 'Content-Type: application/octet-stream' -X POST -T "$DATA/file" -o /dev/null \
    -w '%{time_total}' "$CONTROL_URL")
  CUP+=("$(mbps "$t")")
done
IDLIST=$(printf '"%s",' "${IDS[@]}"); IDLIST="[${IDLIST%,}]"
curl -skf -H "$AUTH" -H 'Content-Type: application/json' -o /dev/null \
  "$BASE/collections/docs/records" -d "{\"id\":\"r1\",\"blob\":$IDLIST}"
URL="$BASE/collections/docs/records/r1/files/blob/${IDS[0]}"
for i in $(seq "$RUNS"); do
  before=$(rss_kib); hwm_reset
  t=$(curl -sk -H "$AUTH" -o "$DATA/down" -w '%{time_total}' "$URL")
  DOWN+=("$(mbps "$t")")
  DOWN_RSS+=("$(( $(hwm_kib) - before ))")
  cmp -s "$DATA/file" "$DATA/down" || { echo "downloaded bytes differ" >&2; exit 1; }
  rm -f "$DATA/down"
  t=$(curl -skf -o "$DATA/down" -w '%{time_total}' "$CONTROL_URL")
  CDOWN+=("$(mbps "$t")")
  cmp -s "$DATA/file" "$DATA/down" || { echo "control bytes differ" >&2; exit 1; }
  rm -f "$DATA/down"
done
MID=$((SIZE / 2 + 12345))
TTFB=()
for i in $(seq "$READS"); do
  TTFB+=("$(curl -sk -H "$AUTH" -r "$MID-$MID" -o /dev/null \
    -w '%{time_starttransfer} %{time_pretransfer}\n' "$URL" | awk '{printf "%.3f", ($1 - $2) * 1000}')")
done
P50=$(printf '%s\n' "${TTFB[@]}" | sort -n | awk -v n="$READS" 'NR==int(n*0.5+0.5){print}')
P99=$(printf '%s\n' "${TTFB[@]}" | sort -n | awk -v n="$READS" 'NR==int(n*0.99+0.5){print}')

CP_MED=$(printf '%s\n' "${CP[@]}" | median)
UP_MED=$(printf '%s\n' "${UP[@]}" | median)
DOWN_MED=$(printf '%s\n' "${DOWN[@]}" | median)
CUP_MED=$(printf '%s\n' "${CUP[@]}" | median)
CDOWN_MED=$(printf '%s\n' "${CDOWN[@]}" | median)
UP_RSS_MED=$(printf '%s\n' "${UP_RSS[@]}" | median)
DOWN_RSS_MED=$(printf '%s\n' "${DOWN_RSS[@]}" | median)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a / b}'; }
printf '| figure (%s MiB file) | median | runs |\n|---|---|---|\n' "$MIB"
printf '| cp + sync, MB/s (baseline) | %s | %s |\n' "$CP_MED" "${CP[*]}"
printf '| unencrypted control: upload / download, MB/s | %s / %s | %s / %s |\n' "$CUP_MED" "$CDOWN_MED" "${CUP[*]}" "${CDOWN[*]}"
printf '| upload over HTTPS, MB/s | %s (%s of cp, %s of control) | %s |\n' "$UP_MED" "$(ratio "$UP_MED" "$CP_MED")" "$(ratio "$UP_MED" "$CUP_MED")" "${UP[*]}"
printf '| download over HTTPS, MB/s | %s (%s of cp, %s of control) | %s |\n' "$DOWN_MED" "$(ratio "$DOWN_MED" "$CP_MED")" "$(ratio "$DOWN_MED" "$CDOWN_MED")" "${DOWN[*]}"
printf '| 1-byte range in the middle, TTFB ms p50 / p99 | %s / %s | %s reads |\n' "$P50" "$P99" "$READS"
printf '| server peak RSS during an upload, KiB over before | %s | %s |\n' "$UP_RSS_MED" "${UP_RSS[*]}"
printf '| server peak RSS during a download, KiB over before | %s | %s |\n' "$DOWN_RSS_MED" "${DOWN_RSS[*]}"
echo "RESULT cp_mbps=$CP_MED control_upload_mbps=$CUP_MED control_download_mbps=$CDOWN_MED upload_mbps=$UP_MED download_mbps=$DOWN_MED ttfb_p50_ms=$P50 ttfb_p99_ms=$P99 upload_rss_kib=$UP_RSS_MED download_rss_kib=$DOWN_RSS_MED"
