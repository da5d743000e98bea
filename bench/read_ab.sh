#!/usr/bin/env bash
# A/B of /healthz and token-authenticated reads between two builds, for a change
# whose effect on the read path is small next to the machine's noise: the two
# servers run one after the other, PASSES times (default 3) each, RUNS (3) wrk
# runs of SECS (5) seconds per server start, one tenant with 100 records; then
# the medians of each side and their ratio.
# Usage: bench/read_ab.sh <dir with silo, before> <dir with silo, after>
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
A=${1:?build dir before}; B=${2:?build dir after}
PASSES=${PASSES:-3}; RUNS=${RUNS:-3}; SECS=${SECS:-5}
OUT=$(mktemp /tmp/silo-read-ab-XXXXXX)
for pass in $(seq "$PASSES"); do
  for side in A B; do
    BIN=$([ "$side" = A ] && echo "$A" || echo "$B")/silo
    DATA=$(mktemp -d /tmp/silo-readab-XXXXXX)
    SILO_DATA_DIR=$DATA/d SILO_LISTEN=127.0.0.1:0 SILO_OPERATOR_LISTEN=127.0.0.1:0 SILO_API_RATE_PER_MINUTE=1000000 SILO_OPERATOR_ACCESS=allowed \
      SILO_SYNCHRONOUS=normal $BIN serve >"$DATA/log" 2>&1 &
    PID=$!
    for _ in $(seq 100); do [ -f "$DATA/d/platform/server.json" ] && break; sleep 0.1; done
    ADDR=$(/usr/bin/python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['listen'])" "$DATA/d/platform/server.json")
    TOK=$(SILO_DATA_DIR=$DATA/d /usr/bin/python3 - $BIN "$ADDR" <<'PY'
import datetime, subprocess, sys, requests, urllib3
urllib3.disable_warnings()
silo, addr = sys.argv[1], sys.argv[2]
subprocess.run([silo, "tenant", "create", "bench0"], check=True, capture_output=True)
exp = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
tok = subprocess.run([silo, "tenant", "token", "bench0", "--name", "b", "--expires", exp,
                      "--permission", "collections.manage", "--permission", "records.*.create",
                      "--permission", "records.*.read"], check=True, capture_output=True, text=True).stdout.strip()
s = requests.Session(); s.verify = False; s.headers["Authorization"] = "Bearer " + tok
base = "https://%s/t/bench0/api/collections" % addr
s.post(base, verify=False, json={"name": "items", "fields": [{"name": "title", "type": "string", "required": True},
       {"name": "n", "type": "integer", "indexed": True}]}).raise_for_status()
for j in range(100):
    s.post(base + "/items/records", verify=False, json={"id": "b%d" % j, "title": "seed", "n": j}).raise_for_status()
print(tok)
PY
)
    for _ in $(seq "$RUNS"); do
      hz=$(wrk -t2 -c32 -d"${SECS}s" "https://$ADDR/healthz" | awk '/Requests\/sec/{print $2}')
      rd=$(MODE=read SLUGS=bench0 TOKENS=$TOK wrk -t2 -c32 -d"${SECS}s" -s "$HERE/lua/records.lua" "https://$ADDR" | awk '/Requests\/sec/{print $2}')
      echo "$side pass$pass healthz $hz read $rd" | tee -a "$OUT"
    done
    kill $PID; wait $PID 2>/dev/null; rm -rf "$DATA"
  done
done
/usr/bin/python3 - "$OUT" <<'PY'
import re, statistics, sys
d = {"A": {"hz": [], "rd": []}, "B": {"hz": [], "rd": []}}
for line in open(sys.argv[1]):
    m = re.match(r"(\w) pass\d+ healthz ([\d.]+) read ([\d.]+)", line)
    if m:
        d[m.group(1)]["hz"].append(float(m.group(2)))
        d[m.group(1)]["rd"].append(float(m.group(3)))
med = {k: {f: statistics.median(v) for f, v in d[k].items()} for k in d}
print("| side | healthz req/s (median) | read req/s (median) | runs |")
print("|---|---|---|---|")
for k in "AB":
    print("| %s | %.0f | %.0f | %d |" % (k, med[k]["hz"], med[k]["rd"], len(d[k]["rd"])))
print("RESULT read_ratio=%.3f healthz_ratio=%.3f" % (med["B"]["rd"] / med["A"]["rd"],
                                                     med["B"]["hz"] / med["A"]["hz"]))
PY
rm -f "$OUT"
