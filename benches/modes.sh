#!/usr/bin/env bash
# The per-signing-mode rows of BENCHMARKS.md: for HS256, ES256 and EdDSA, the
# same /me-vs-/healthz load as benches/load.sh and /refresh rotations/s on
# SQLite (10k sessions). Loopback only, bounded in time (about 3 minutes;
# DURATION scales the runs).
#
#   bash benches/modes.sh
#
# Needs wrk (Debian: apt-get install wrk), curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-6}"          # seconds per wrk run
CONNECTIONS="${CONNECTIONS:-64}"
ROUNDS="${ROUNDS:-3}"               # alternating /healthz and /me rounds per mode (medians)
PORT="${PORT:-18081}"
SERVER_LOG=error
# shellcheck source=benches/common.sh
. benches/common.sh

echo "machine: $(nproc) cores, $(uname -sr); wrk and the server share the same cores"
for MODE in HS256 ES256 EdDSA; do
    echo
    echo "== $MODE"
    DIR="$WORK/$MODE"; mkdir -p "$DIR"
    # No JWT_PRIVATE_KEY_FILE: ES256/EdDSA generate their key into $DIR.
    start_server "sqlite://$DIR/auth.db" JWT_ALGORITHM="$MODE"
    curl -sf -X POST "$BASE/register" -H 'content-type: application/json' \
        -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" >/dev/null
    TOKEN="$(curl -sf -X POST "$BASE/login" -H 'content-type: application/json' \
        -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" | json_field access_token)"
    echo "alg in the token header: $(echo "$TOKEN" | cut -d. -f1 | python3 -c \
        'import base64,json,sys; s=sys.stdin.read().strip(); print(json.loads(base64.urlsafe_b64decode(s+"="*(-len(s)%4)))["alg"])')"
    : >"$DIR/healthz.rps"; : >"$DIR/me.rps"
    for round in $(seq 1 "$ROUNDS"); do
        wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "$BASE/healthz" | rps >>"$DIR/healthz.rps"
        wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -H "Authorization: Bearer $TOKEN" "$BASE/me" \
            | tee -a "$DIR/me.txt" | rps >>"$DIR/me.rps"
    done
    HEALTHZ="$(median <"$DIR/healthz.rps")"; ME="$(median <"$DIR/me.rps")"
    echo "healthz: $HEALTHZ req/s  (rounds: $(paste -sd' ' "$DIR/healthz.rps"))"
    echo "me:      $ME req/s  (rounds: $(paste -sd' ' "$DIR/me.rps")); runs with non-2xx: $(grep -c 'Non-2xx' "$DIR/me.txt" || true)"
    awk -v a="$ME" -v b="$HEALTHZ" -v m="$MODE" 'BEGIN {printf "%s ratio me/healthz: %.2f   (target >= 0.90)\n", m, a/b}'
    stop_server

    start_server "sqlite://$DIR/refresh.db" JWT_ALGORITHM="$MODE"
    "$REFRESH_LOAD" --url "$BASE" --database-url "sqlite://$DIR/refresh.db" --secret "$SECRET" \
        --chains 64 --seconds "$DURATION" --filler 10000 | sed "s/^/$MODE sqlite 10k: /"
    stop_server
done
