#!/usr/bin/env bash
# Load figures of the release binary, on loopback only, bounded in time.
#
#   bash benches/load.sh            # build, start a fresh server, measure, stop
#
# Needs wrk (Debian: apt-get install wrk), curl and jq. Prints the figures and
# the ratios; the server's data lives in a temporary folder removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
PORT="${PORT:-18080}"
BASE="http://127.0.0.1:$PORT"

for tool in wrk curl jq; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install $tool)" >&2; exit 1; }
done

cargo build --release --quiet
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

DATABASE_URL="sqlite://$WORK/auth.db" BIND_ADDR="127.0.0.1:$PORT" AUTH_RATE_LIMIT=0 \
    JWT_SECRET="load-test-secret-0123456789-0123456789" RUST_LOG=warn \
    ./target/release/auth-api >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "idle RSS: $(( $(rss_kib) / 1024 )) MiB"

EMAIL="load@example.com"; PASSWORD="correct horse battery staple"
curl -sf -X POST "$BASE/register" -H 'content-type: application/json' \
    -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" >/dev/null
TOKEN=$(curl -sf -X POST "$BASE/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" | jq -r .access_token)

# Requests per second from wrk's summary line.
rps() { awk '/Requests\/sec/ {print $2}'; }

echo
echo "== GET /healthz vs GET /me (same binary, same load: $THREADS threads, $CONNECTIONS connections, $DURATION)"
HEALTHZ=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$BASE/healthz" | tee "$WORK/healthz.txt" | rps)
ME=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -H "Authorization: Bearer $TOKEN" --latency "$BASE/me" \
    | tee "$WORK/me.txt" | rps)
echo "healthz: $HEALTHZ req/s"
echo "me:      $ME req/s   (p99 $(awk '/ 99%/ {print $2}' "$WORK/me.txt"))"
grep -E "Non-2xx|Socket errors" "$WORK/me.txt" || echo "me: no errors"
echo "RSS after the /me load: $(( $(rss_kib) / 1024 )) MiB"
awk -v a="$ME" -v b="$HEALTHZ" 'BEGIN {printf "ratio me/healthz: %.2f\n", a/b}'

echo
echo "== login latency, one at a time (30 logins)"
for _ in $(seq 1 30); do
    curl -s -o /dev/null -w '%{time_total}\n' -X POST "$BASE/login" -H 'content-type: application/json' \
        -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}"
done | sort -n | awk '{a[NR]=$1} END {printf "login: median %.1f ms, p90 %.1f ms, max %.1f ms\n", a[int(NR/2)+1]*1000, a[int(NR*0.9)]*1000, a[NR]*1000}'

echo
echo "== login throughput under saturation ($CONNECTIONS connections, $DURATION)"
cat > "$WORK/login.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"$EMAIL","password":"$PASSWORD"}'
LUA
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$WORK/login.lua" --latency "$BASE/login" | tee "$WORK/login.txt" \
    | grep -E "Requests/sec|Non-2xx| 50%| 99%" || true
echo "peak RSS so far: $(( $(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status") / 1024 )) MiB"
