#!/usr/bin/env bash
# Login figures for `silo serve` (issue: identity), in one run:
#   - login throughput and p99 at the configured Argon2id cost (a user
#     without MFA, right password: hash check, session row, audit entry)
#   - authenticated record reads (API token): p99 idle, then p99 while FLOOD
#     concurrent clients hammer login with wrong passwords, on a server with
#     the login limits off (A: every attempt reaches the password pool, the
#     worst case) and with the default limits (B: the flood is answered 429)
# Every figure is the median of RUNS runs of SECONDS_PER_RUN seconds; wrk
# runs beside the server on the same 2 cores.
# Usage: bench/login_bench.sh [build dir]  (env: RUNS=5 SECONDS_PER_RUN=5 FLOOD=200)
set -euo pipefail
PASSWORD="plum tree over the bench river"
BUILD=${1:-build}
RUNS=${RUNS:-5}
SECS=${SECONDS_PER_RUN:-5}
FLOOD=${FLOOD:-200}
HERE=$(cd "$(dirname "$0")" && pwd)
command -v wrk >/dev/null || { echo "wrk missing: run scripts/bootstrap.sh" >&2; exit 1; }

DATA=$(mktemp -d /tmp/silo-bench-XXXXXX)
PID=
FLOOD_PID=
stop() {
  [ -n "$FLOOD_PID" ] && kill "$FLOOD_PID" 2>/dev/null && wait "$FLOOD_PID" 2>/dev/null || true
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
}
trap 'stop; rm -rf "$DATA"' EXIT

start() {  # $1 = SILO_LOGIN_RATE_PER_MINUTE
rm -rf "$DATA/d"
SILO_DATA_DIR=$DATA/d SILO_LISTEN=127.0.0.1:0 SILO_OPERATOR_LISTEN=127.0.0.1:0 SILO_API_RATE_PER_MINUTE=1000000 SILO_OPERATOR_ACCESS=allowed \
  SILO_LOGIN_RATE_PER_MINUTE=$1 "$BUILD/silo" serve >"$DATA/server.log" 2>&1 &
PID=$!
for _ in $(seq 100); do [ -f "$DATA/d/platform/server.json" ] && break; sleep 0.1; done
ADDR=$(/usr/bin/python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['listen'])" "$DATA/d/platform/server.json")
# Tenant bench: an editor (no MFA) with a password, a collection with 100
# records, and an API token that reads them.
TOKEN=$(SILO_DATA_DIR=$DATA/d /usr/bin/python3 - "$BUILD/silo" "$ADDR" "$PASSWORD" <<'PY'
import datetime, json, subprocess, sys, requests, urllib3
urllib3.disable_warnings()
silo, addr, pw = sys.argv[1:4]
out = json.loads(subprocess.run([silo, "--json", "tenant", "create", "bench", "--owner-email",
                                 "owner@bench.test"], check=True, capture_output=True).stdout)
tok = subprocess.run([silo, "tenant", "token", "bench", "--name", "b", "--expires",
                      (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"), "--permission", "collections.manage",
                      "--permission", "records.*.create", "--permission", "records.*.read",
                      "--permission", "records.*.update", "--permission", "records.*.delete",
                      "--permission", "records.*.history", "--permission", "collections.read",
                      "--permission", "users.manage"],
                     check=True, capture_output=True, text=True).stdout.strip()
base = "https://%s/t/bench/api" % addr
h = {"Authorization": "Bearer " + tok}
requests.post(base + "/collections", headers=h, verify=False, json={"name": "items", "fields": [
    {"name": "title", "type": "string"}]}).raise_for_status()
for j in range(100):
    requests.post(base + "/collections/items/records", headers=h, verify=False,
                  json={"id": "b%d" % j, "title": "seed"}).raise_for_status()
inv = requests.post(base + "/users", headers=h, verify=False,
                    json={"email": "ed@bench.test", "roles": ["editor"]})
inv.raise_for_status()
requests.post(base + "/auth/setup", verify=False,
              json={"token": inv.json()["setup_token"], "password": pw}).raise_for_status()
print(tok)
PY
)

}

median() { sort -n | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
reads() {  # -> "rps p99_ms"
  local out
  out=$(MODE=read SLUGS=bench TOKENS=$TOKEN wrk -t1 -c16 -d"${SECS}s" -s "$HERE/lua/records.lua" "https://$ADDR")
  if grep -q 'Non-2xx' <<<"$out"; then echo "bench: reads got error answers" >&2; echo "$out" >&2; exit 1; fi
  awk '/Requests\/sec/{r=$2} /^P99_MS/{p=$2} END{print r, p}' <<<"$out"
}

flood() {  # -> read p99 while FLOOD clients send wrong passwords; flood answers/s in $DATA/flood
  SLUG=bench EMAIL=ed@bench.test PASSWORD="wrong password guess" \
    wrk -t1 -c"$FLOOD" -d"$((SECS + 2))s" -s "$HERE/lua/login.lua" "https://$ADDR" >"$DATA/flood" 2>&1 &
  FLOOD_PID=$!
  sleep 1
  reads
  wait "$FLOOD_PID" || true; FLOOD_PID=
  sleep 3  # let the password pool drain the flood before the next round
}

# A: login limits off, so that every attempt of the flood reaches Argon2id
# (the worst case for the password pool).
start 1000000
LOGIN_RPS=(); LOGIN_P99=(); IDLE=(); LOADED=(); LOADED_RPS=(); IDLE_RPS=(); FLOOD_RPS=()
for _ in $(seq "$RUNS"); do
  out=$(SLUG=bench EMAIL=ed@bench.test PASSWORD=$PASSWORD wrk -t1 -c4 -d"${SECS}s" -s "$HERE/lua/login.lua" "https://$ADDR")
  if grep -q 'Non-2xx' <<<"$out"; then echo "bench: logins got error answers" >&2; echo "$out" >&2; exit 1; fi
  LOGIN_RPS+=("$(awk '/Requests\/sec/{print $2}' <<<"$out")")
  LOGIN_P99+=("$(awk '/^P99_MS/{print $2}' <<<"$out")")
  r=$(reads); IDLE_RPS+=("${r% *}"); IDLE+=("${r#* }")
  r=$(flood); LOADED_RPS+=("${r% *}"); LOADED+=("${r#* }")
  FLOOD_RPS+=("$(awk '/Requests\/sec/{print $2}' "$DATA/flood")")
done
POOL_503=$(grep -c '"status":503' "$DATA/server.log" || true)
stop; PID=
# B: the default login limits (10 a minute per client and per account): the
# flood is answered 429 from a tarpit.
start 10
IDLE_B=(); LOADED_B=(); FLOOD_B=()
for _ in $(seq "$RUNS"); do
  r=$(reads); IDLE_B+=("${r#* }")
  r=$(flood); LOADED_B+=("${r#* }")
  FLOOD_B+=("$(awk '/Requests\/sec/{print $2}' "$DATA/flood")")
done

m() { printf '%s\n' "$@" | median; }
printf '| figure | median | runs |\n|---|---|---|\n'
printf '| login/s (right password, 4 clients) | %s | %s |\n' "$(m "${LOGIN_RPS[@]}")" "${LOGIN_RPS[*]}"
printf '| login p99 ms | %s | %s |\n' "$(m "${LOGIN_P99[@]}")" "${LOGIN_P99[*]}"
printf '| A read p99 ms, idle | %s | %s |\n' "$(m "${IDLE[@]}")" "${IDLE[*]}"
printf '| A read p99 ms, %s clients flooding login, limits off | %s | %s |\n' "$FLOOD" "$(m "${LOADED[@]}")" "${LOADED[*]}"
printf '| A read req/s idle / under flood | %s / %s | |\n' "$(m "${IDLE_RPS[@]}")" "$(m "${LOADED_RPS[@]}")"
printf '| A flood answers/s (401, or 503 from a full pool) | %s | %s |\n' "$(m "${FLOOD_RPS[@]}")" "${FLOOD_RPS[*]}"
printf '| B read p99 ms, idle | %s | %s |\n' "$(m "${IDLE_B[@]}")" "${IDLE_B[*]}"
printf '| B read p99 ms, %s clients flooding login, default limits | %s | %s |\n' "$FLOOD" "$(m "${LOADED_B[@]}")" "${LOADED_B[*]}"
printf '| B flood answers/s (429) | %s | %s |\n' "$(m "${FLOOD_B[@]}")" "${FLOOD_B[*]}"
echo "read p99 ratio under flood / idle: A (limits off) $(awk -v a="$(m "${LOADED[@]}")" -v b="$(m "${IDLE[@]}")" 'BEGIN{printf "%.2f", a/b}'), B (default limits) $(awk -v a="$(m "${LOADED_B[@]}")" -v b="$(m "${IDLE_B[@]}")" 'BEGIN{printf "%.2f", a/b}')"
echo "A: 503 answers from the full password pool: $POOL_503"
echo "RESULT login_per_s=$(m "${LOGIN_RPS[@]}") login_p99_ms=$(m "${LOGIN_P99[@]}") a_idle_p99_ms=$(m "${IDLE[@]}") a_flood_p99_ms=$(m "${LOADED[@]}") b_idle_p99_ms=$(m "${IDLE_B[@]}") b_flood_p99_ms=$(m "${LOADED_B[@]}")"
