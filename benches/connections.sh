#!/usr/bin/env bash
# 10,000 concurrent keep-alive connections polling GET /me slowly, on one
# release instance (BENCHMARKS.md, "Many connections"). About 2 minutes.
#
#   bash benches/connections.sh
#
# Raises this shell's open-file limit to the hard limit (both the holder and
# the server need more than 10,000 descriptors; the server also raises its own
# at start). The connections come from 40 source addresses, 127.0.0.2 to
# 127.0.0.41, 250 each: under the default HTTP_MAX_CONNECTIONS_PER_IP (256),
# which stays on. Each polls GET /me every INTERVAL seconds (default 3: the
# server closes a connection idle for 5 s, actix's keep-alive, and the holder
# itself runs late on a busy machine; a connection closed is reopened and
# counted). Prints the
# server's RSS idle and with every connection open (and per connection), the
# /me latency of a separate probe process on its own connection before and
# while the connections are held, and whether new clients still connect.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS="${CONNECTIONS:-10000}"
ADDRESSES="${ADDRESSES:-40}"
INTERVAL="${INTERVAL:-3}"
PROBE_SECONDS="${PROBE_SECONDS:-20}"
PORT="${PORT:-18197}"
# shellcheck source=benches/common.sh
. benches/common.sh
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }

NEED=$((CONNECTIONS + 1000))
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$NEED" ]; then
    echo "the hard open-file limit ($(ulimit -Hn)) is under $NEED: raise it (or run as root)" >&2
    exit 1
fi
cargo bench --bench connections --no-run --quiet 2>/dev/null
BENCH="$(ls -t target/release/deps/connections-* | grep -v '\.d$' | head -n1)"

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "open-file limit of this run: $(ulimit -n)"
echo "the holder, the probe and the server share the same cores"
echo

# Another benchmark on the port would answer our health check and our probes.
if ss -Hltn "( sport = :$PORT )" | grep -q .; then
    echo "port $PORT is in use: set PORT to a free one" >&2
    exit 1
fi
start_server "sqlite://$WORK/auth.db"
curl -sf -X POST "$BASE/register" -H 'content-type: application/json' \
    -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" >/dev/null
TOKEN="$(curl -sf -X POST "$BASE/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" | json_field access_token)"

echo "== baseline: no other connections"
"$BENCH" probe --port "$PORT" --token "$TOKEN" --seconds "$PROBE_SECONDS"
IDLE_KIB="$(rss_kib)"
echo "server RSS: $((IDLE_KIB / 1024)) MiB"

echo
echo "== $CONNECTIONS keep-alive connections, GET /me every ${INTERVAL} s each"
HOLD_SECONDS=$((PROBE_SECONDS + 60))
rm -f "$WORK/ready"
"$BENCH" hold --port "$PORT" --token "$TOKEN" --connections "$CONNECTIONS" --addresses "$ADDRESSES" \
    --interval "$INTERVAL" --seconds "$HOLD_SECONDS" --ready-file "$WORK/ready" >"$WORK/hold.txt" &
HOLDER=$!
for _ in $(seq 1 300); do [ -f "$WORK/ready" ] && break; sleep 0.2; done
[ -f "$WORK/ready" ] || { echo "the connections did not all open" >&2; kill "$HOLDER"; exit 1; }
sleep "$INTERVAL" # one full round of polls on every connection
OPEN="$(ss -Htn state established "( sport = :$PORT )" | wc -l)"
echo "established connections to the server: $OPEN"
"$BENCH" probe --port "$PORT" --token "$TOKEN" --seconds "$PROBE_SECONDS"
LOADED_KIB="$(rss_kib)"
echo "server RSS: $((LOADED_KIB / 1024)) MiB; per connection: $(( (LOADED_KIB - IDLE_KIB) * 1024 / CONNECTIONS )) bytes"
echo "refused at accept (auth_http_connections_refused_total): $(curl -sf "$BASE/metrics" | awk '/^auth_http_connections_refused_total/ {print $2}')"
wait "$HOLDER"
cat "$WORK/hold.txt"
