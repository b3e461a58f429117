#!/usr/bin/env bash
# The backends figures of BENCHMARKS.md (issue 14), from the release binary on loopback:
#   (a) GET /verify against GET /healthz under the same load (target >= 0.90);
#   (b) fan-out: SUBSCRIBERS open GET /revocations streams, the delay from a logout's answer to
#       the last subscriber's event (p50/p99 over LOGOUTS logouts), RSS per subscriber;
#   (c) the revocation set: logouts/s with PRELOAD remembered revocations against a server that
#       forgets them (same database work; target >= 0.80), GET /me with and without them, RSS
#       per remembered revocation.
# About 8 minutes.
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
remembered() { # the set's size in memory (expired entries included until the next prune)
    curl -sf "$BASE/metrics" | awk '/^[a-z_]*revocations_remembered / {print $2}'
}
# Both servers take the same $PRELOAD logouts, then the same $MEASURED measured ones, on the same
# database size: the only difference is that one forgets each revocation after a second
# (ACCESS_TOKEN_TTL=1, no leeway: its tokens would be expired anyway) and the other remembers all.
# The 32 s pause before the measure lets the forgetting server prune (every 30 s) the preload.
echo
echo "== (c) logouts/s with $PRELOAD remembered revocations vs none: both servers first take"
echo "   $PRELOAD logouts through POST /logout, then $MEASURED measured ones (concurrency 32); 2 alternating rounds"
for round in 1 2; do
    start_server "sqlite://$WORK/c-forget-$round.db" "${LOOPBACK[@]}" ACCESS_TOKEN_TTL=1 JWT_LEEWAY=0
    "$REVOCATIONS_LOAD" logouts --url "$BASE" --database-url "sqlite://$WORK/c-forget-$round.db" --secret "$SECRET" \
        --preload "$PRELOAD" --settle 32 --logouts "$MEASURED" --concurrency 32 | tee "$WORK/c-forget.txt" | grep 'logouts/s after'
    awk '/logouts\/s after/ {print $2}' "$WORK/c-forget.txt" >>"$WORK/forget.rate"
    echo "   (forgetting server: $(remembered) in its set after the run, the measured logouts not yet pruned)"
    stop_server

    start_server "sqlite://$WORK/c-keep-$round.db" "${LOOPBACK[@]}"
    TOKEN="$(login_token)"
    me_rps "$TOKEN" >>"$WORK/me-before.rps"
    "$REVOCATIONS_LOAD" logouts --url "$BASE" --database-url "sqlite://$WORK/c-keep-$round.db" --secret "$SECRET" \
        --preload "$PRELOAD" --settle 32 --logouts "$MEASURED" --concurrency 32 --server-pid "$SERVER_PID" \
        | tee "$WORK/c-keep.txt" | grep -E 'logouts/s after|bytes per'
    awk '/logouts\/s after/ {print $2}' "$WORK/c-keep.txt" >>"$WORK/keep.rate"
    me_rps "$TOKEN" >>"$WORK/me-after.rps"
    echo "   (remembering server: $(remembered) in its set after the run)"
    stop_server
done
FORGET="$(median <"$WORK/forget.rate")"; KEEP="$(median <"$WORK/keep.rate")"
echo "logouts/s, forgetting: $(paste -sd' ' "$WORK/forget.rate"); remembering: $(paste -sd' ' "$WORK/keep.rate")"
awk -v a="$KEEP" -v b="$FORGET" 'BEGIN {printf "ratio logouts/s remembering/forgetting: %.2f   (target >= 0.80)\n", a/b}'
echo "GET /me before the logouts: $(paste -sd' ' "$WORK/me-before.rps") req/s; with $PRELOAD+ remembered: $(paste -sd' ' "$WORK/me-after.rps") req/s"
awk -v a="$(median <"$WORK/me-after.rps")" -v b="$(median <"$WORK/me-before.rps")" 'BEGIN {printf "ratio /me with/without: %.2f\n", a/b}'
fi
