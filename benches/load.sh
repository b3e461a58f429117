#!/usr/bin/env bash
# The figures of BENCHMARKS.md, from the release binary on loopback only,
# bounded in time (about 4 minutes; DURATION scales the wrk runs).
#
#   bash benches/load.sh
#
# Needs wrk (Debian: apt-get install wrk) and curl. Starts a fresh server for
# each part, on a temporary SQLite database (and on PostgreSQL when
# BENCH_PG_URL, default postgres://postgres@127.0.0.1:5432/postgres, answers),
# seeds users and sessions, and prints each figure with its target.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-6}"          # seconds per wrk run
CONNECTIONS="${CONNECTIONS:-64}"
PORT="${PORT:-18080}"
PG_URL="${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
# shellcheck source=benches/common.sh
. benches/common.sh
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$SERVER_PID/status"; }
hwm_mib() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$SERVER_PID/status"; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "load generator: wrk and the server share the same cores"
echo

# ---------------------------------------------------------------- SQLite server
start_server "sqlite://$WORK/auth.db"
echo "== memory"
echo "idle RSS after start: $(rss_mib) MiB   (target <= 32 MiB)"
curl -sf -X POST "$BASE/register" -H 'content-type: application/json' \
    -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" >/dev/null
TOKEN="$(curl -sf -X POST "$BASE/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" | json_field access_token)"

echo
echo "== GET /me vs GET /healthz: same binary, same load ($CONNECTIONS connections), 3 alternating rounds of ${DURATION}s, medians"
for round in 1 2 3; do
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "$BASE/healthz" | rps >>"$WORK/healthz.rps"
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -H "Authorization: Bearer $TOKEN" --latency "$BASE/me" \
        | tee -a "$WORK/me.txt" | rps >>"$WORK/me.rps"
done
HEALTHZ="$(median <"$WORK/healthz.rps")"; ME="$(median <"$WORK/me.rps")"
echo "healthz: $HEALTHZ req/s  (rounds: $(paste -sd' ' "$WORK/healthz.rps"))"
echo "me:      $ME req/s  (rounds: $(paste -sd' ' "$WORK/me.rps")); non-2xx: $(grep -c 'Non-2xx' "$WORK/me.txt" || true) runs with errors"
awk -v a="$ME" -v b="$HEALTHZ" 'BEGIN {printf "ratio me/healthz: %.2f   (target >= 0.90)\n", a/b}'
echo "RSS after the /me load: $(rss_mib) MiB   (target <= 64 MiB)"

echo
echo "== login against the argon2 limit"
HASH_LINE="$(./target/release/auth-api hash-cost --rounds 20)"
echo "$HASH_LINE"
LIMIT="$(echo "$HASH_LINE" | sed -E 's/.*: ([0-9.]+) hashes\/s/\1/')"
cat >"$WORK/login.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"$EMAIL","password":"$PASSWORD"}'
LUA
LOGIN="$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/login.lua" "$BASE/login" | tee "$WORK/login.txt" | rps)"
echo "login: $LOGIN logins/s; non-2xx answers: $(awk '/Non-2xx/ {print $4}' "$WORK/login.txt" | grep . || echo 0)"
awk -v a="$LOGIN" -v b="$LIMIT" 'BEGIN {printf "ratio login/argon2 limit: %.2f   (target >= 0.80)\n", a/b}'
echo "peak RSS so far (login flood included): $(hwm_mib) MiB"

echo
echo "== GET /me while /login is saturated"
wrk -t1 -c"$CONNECTIONS" -d"$((DURATION + 4))s" -s "$WORK/login.lua" "$BASE/login" >"$WORK/flood.txt" &
FLOOD=$!
sleep 2
wrk -t1 -c16 -d"${DURATION}s" -H "Authorization: Bearer $TOKEN" --latency "$BASE/me" >"$WORK/me-flood.txt"
wait "$FLOOD"
echo "me during the flood: $(rps <"$WORK/me-flood.txt") req/s, p50 $(awk '/ 50%/ {print $2}' "$WORK/me-flood.txt"), p99 $(awk '/ 99%/ {print $2}' "$WORK/me-flood.txt")   (target p99 <= 25 ms)"
echo "errors: $(grep -E 'Non-2xx|Socket errors' "$WORK/me-flood.txt" || echo none)"
echo "logins during that time: $(rps <"$WORK/flood.txt") /s"
stop_server

# ---------------------------------------------------------------- refresh
refresh_run() { # refresh_run LABEL DATABASE_URL FILLER
    start_server "$2"
    "$REFRESH_LOAD" --url "$BASE" --database-url "$2" --secret "$SECRET" --chains 64 \
        --seconds "$DURATION" --filler "$3" | sed "s/^/$1 /"
    stop_server
}
rotations() { sed -E 's/.*refresh: ([0-9]+) rotations.*/\1/'; }

echo
echo "== POST /refresh over HTTP (64 concurrent session chains; target >= 5,000 rotations/s, 0 failures)"
refresh_run "sqlite  10k:" "sqlite://$WORK/r10k.db" 10000 | tee "$WORK/r-sqlite-10k"
refresh_run "sqlite   1M:" "sqlite://$WORK/r1m.db" 1000000 | tee "$WORK/r-sqlite-1m"
awk -v a="$(rotations <"$WORK/r-sqlite-1m")" -v b="$(rotations <"$WORK/r-sqlite-10k")" \
    'BEGIN {printf "sqlite: 1M vs 10k sessions: %+.0f %%   (target: drop <= 20 %%)\n", (a/b-1)*100}'

if command -v psql >/dev/null && psql "$PG_URL" -qAtc 'SELECT 1' >/dev/null 2>&1; then
    for size in 10k 1m; do
        db="authbench_$$_$size"
        psql "$PG_URL" -qc "CREATE DATABASE $db" >/dev/null
        url="${PG_URL%/*}/$db"
        filler=10000; [ "$size" = 1m ] && filler=1000000
        refresh_run "postgres $size:" "$url" "$filler" | tee "$WORK/r-pg-$size"
        psql "$PG_URL" -qc "DROP DATABASE $db" >/dev/null
    done
    awk -v a="$(rotations <"$WORK/r-pg-1m")" -v b="$(rotations <"$WORK/r-pg-10k")" \
        'BEGIN {printf "postgres: 1M vs 10k sessions: %+.0f %%   (target: drop <= 20 %%)\n", (a/b-1)*100}'
else
    echo "postgres: skipped ($PG_URL does not answer)"
fi
