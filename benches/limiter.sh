#!/usr/bin/env bash
# What the shared rate limiter adds to a limited request on PostgreSQL: one
# upsert. Sequential requests (wrk, 1 connection) to POST /register with a
# malformed email, which is answered 422 right after the per-IP limiter:
# with the limiter off (0), with a budget no run can exhaust (every request
# one upsert), and with the default 20 a minute (a flood from one address:
# after 20, refused, from memory). About 2 minutes.
#
#   bash benches/limiter.sh
#
# Needs wrk, curl and PostgreSQL at BENCH_PG_URL (default
# postgres://postgres@127.0.0.1:5432/postgres); creates a throwaway database.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-5}"
PORT="${PORT:-18198}"
PG_URL="${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if ss -Hltn "( sport = :$PORT )" | grep -q .; then
    echo "port $PORT is in use: set PORT to a free one" >&2
    exit 1
fi
# shellcheck source=benches/common.sh
. benches/common.sh

DB="bench_limiter_$$"
psql "$PG_URL" -qc "CREATE DATABASE $DB" >/dev/null
trap 'stop_server; psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null; rm -rf "$WORK"' EXIT
DB_URL="${PG_URL%/*}/$DB"
cat >"$WORK/register.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"not-an-email","password":"correct horse battery staple"}'
LUA
p50() { awk '$1 == "50%" {print $2}'; }
p99() { awk '$1 == "99%" {print $2}'; }

echo "machine: $(nproc) cores, shared with whatever else runs; PostgreSQL on the same machine"
for round in 1 2 3; do
    for limit in 0 1000000000 20; do
        start_server "$DB_URL" AUTH_RATE_LIMIT="$limit"
        OUT="$(wrk -t1 -c1 -d"${DURATION}s" --latency -s "$WORK/register.lua" "$BASE/register")"
        echo "round $round, AUTH_RATE_LIMIT=$limit: $(echo "$OUT" | rps) req/s, p50 $(echo "$OUT" | p50), p99 $(echo "$OUT" | p99)"
        stop_server
    done
done
