#!/usr/bin/env bash
# The backends figures of BENCHMARKS.md (issue 14), from the release binary on loopback:
#   (a) GET /verify against GET /healthz under the same load (target >= 0.90);
#   (b) fan-out: SUBSCRIBERS open GET /revocations streams, the delay from a logout's answer to
#       the last subscriber's event (p50/p99 over LOGOUTS logouts), RSS per subscriber;
#   (c) the revocation set: logouts/s with PRELOAD remembered revocations against none
#       (target >= 0.80), GET /me with and without them, RSS per remembered revocation.
# About 4 minutes.
#
#   bash benches/backends.sh      # DURATION=6 SUBSCRIBERS=1000 LOGOUTS=50 PRELOAD=100000 PARTS="a b c"
#
# Needs wrk (Debian: apt-get install wrk), curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-6}"
CONNECTIONS="${CONNECTIONS:-64}"
SUBSCRIBERS="${SUBSCRIBERS:-1000}"
LOGOUTS="${LOGOUTS:-50}"
PRELOAD="${PRELOAD:-100000}"
MEASURED="${MEASURED:-20000}"
PORT="${PORT:-18090}"
PARTS="${PARTS:-a b c}"            # which parts to run, e.g. PARTS=c
# shellcheck source=benches/common.sh
. benches/common.sh
cargo bench --bench revocations_load --no-run --quiet 2>/dev/null
REVOCATIONS_LOAD="$(ls -t target/release/deps/revocations_load-* | grep -v '\.d$' | head -n1)"
SERVICE_KEY="bench-service-key-0123456789-0123456789"
# Every subscriber and wrk connection comes from 127.0.0.1.
LOOPBACK=(HTTP_MAX_CONNECTIONS_PER_IP=100000 BACKEND_API_KEYS="$SERVICE_KEY")

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "load generator: wrk / the bench client and the server share the same cores"
echo

login_token() {
    curl -sf -X POST "$BASE/register" -H 'content-type: application/json' \
        -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" >/dev/null
    curl -sf -X POST "$BASE/login" -H 'content-type: application/json' \
        -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" | json_field access_token
}

# ---------------------------------------------------------------- (a) /verify
if [[ " $PARTS " == *" a "* ]]; then
start_server "sqlite://$WORK/a.db" "${LOOPBACK[@]}"
TOKEN="$(login_token)"
echo "== (a) GET /verify vs GET /healthz: same load ($CONNECTIONS connections), 3 alternating rounds of ${DURATION}s, medians"
for round in 1 2 3; do
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "$BASE/healthz" | rps >>"$WORK/healthz.rps"
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -H "Authorization: Bearer $TOKEN" --latency "$BASE/verify" \
        | tee -a "$WORK/verify.txt" | rps >>"$WORK/verify.rps"
done
HEALTHZ="$(median <"$WORK/healthz.rps")"; VERIFY="$(median <"$WORK/verify.rps")"
echo "healthz: $HEALTHZ req/s  (rounds: $(paste -sd' ' "$WORK/healthz.rps"))"
echo "verify:  $VERIFY req/s  (rounds: $(paste -sd' ' "$WORK/verify.rps")); non-2xx answers: $(awk '/Non-2xx/ {print $4}' "$WORK/verify.txt" | paste -sd' ' | grep . || echo none)$(grep -E 'Socket errors' "$WORK/verify.txt" | sed 's/^/; /' | paste -sd' ')"
echo "verify latency p50/p99 of the last round: $(awk '/ 50%/ {print $2}' "$WORK/verify.txt" | tail -n1) / $(awk '/ 99%/ {print $2}' "$WORK/verify.txt" | tail -n1)"
awk -v a="$VERIFY" -v b="$HEALTHZ" 'BEGIN {printf "ratio verify/healthz: %.2f   (target >= 0.90)\n", a/b}'
stop_server
fi

# ---------------------------------------------------------------- (b) fan-out
if [[ " $PARTS " == *" b "* ]]; then
echo
echo "== (b) fan-out: $SUBSCRIBERS subscribers of GET /revocations, $LOGOUTS logouts one after the other"
start_server "sqlite://$WORK/b.db" "${LOOPBACK[@]}"
"$REVOCATIONS_LOAD" fanout --url "$BASE" --database-url "sqlite://$WORK/b.db" --secret "$SECRET" \
    --service-key "$SERVICE_KEY" --subscribers "$SUBSCRIBERS" --logouts "$LOGOUTS" --server-pid "$SERVER_PID"
stop_server
fi

# ---------------------------------------------------------------- (c) the set
if [[ " $PARTS " == *" c "* ]]; then
me_rps() {
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -H "Authorization: Bearer $1" "$BASE/me" | rps
}
echo
echo "== (c) logouts/s with $PRELOAD remembered revocations vs none ($MEASURED logouts measured, concurrency 32;"
echo "   both databases hold $((PRELOAD + MEASURED)) sessions of one user: only the remembered revocations differ)"
start_server "sqlite://$WORK/c0.db" "${LOOPBACK[@]}"
TOKEN="$(login_token)"
"$REVOCATIONS_LOAD" logouts --url "$BASE" --database-url "sqlite://$WORK/c0.db" --secret "$SECRET" \
    --preload 0 --extra "$PRELOAD" --logouts "$MEASURED" --concurrency 32 --server-pid "$SERVER_PID" | tee "$WORK/c0.txt"
NONE="$(awk '/logouts\/s with/ {print $2}' "$WORK/c0.txt")"
ME_NONE="$(me_rps "$TOKEN")"
echo "GET /me with $(curl -sf -H "Authorization: Bearer $SERVICE_KEY" "$BASE/revocations" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["revoked"]))') remembered: $ME_NONE req/s"
stop_server

start_server "sqlite://$WORK/c1.db" "${LOOPBACK[@]}"
TOKEN="$(login_token)"
"$REVOCATIONS_LOAD" logouts --url "$BASE" --database-url "sqlite://$WORK/c1.db" --secret "$SECRET" \
    --preload "$PRELOAD" --logouts "$MEASURED" --concurrency 32 --server-pid "$SERVER_PID" | tee "$WORK/c1.txt"
FULL="$(awk '/logouts\/s with/ {print $2}' "$WORK/c1.txt")"
ME_FULL="$(me_rps "$TOKEN")"
echo "GET /me with $(curl -sf -H "Authorization: Bearer $SERVICE_KEY" "$BASE/revocations" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["revoked"]))') remembered: $ME_FULL req/s"
awk -v a="$FULL" -v b="$NONE" 'BEGIN {printf "ratio logouts/s full/empty: %.2f   (target >= 0.80)\n", a/b}'
awk -v a="$ME_FULL" -v b="$ME_NONE" 'BEGIN {printf "ratio /me full/empty: %.2f\n", a/b}'
stop_server
fi
