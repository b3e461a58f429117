# Shared by benches/load.sh and benches/modes.sh (sourced, not run): the
# release build, a server on loopback with a throwaway database, and the
# helpers that read wrk's output. The caller sets PORT first.

BASE="http://127.0.0.1:$PORT"
SECRET="load-test-secret-0123456789-0123456789"
EMAIL="load@example.com"
PASSWORD="correct horse battery staple"

for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install $tool)" >&2; exit 1; }
done
cargo build --release --quiet
cargo bench --bench refresh_load --no-run --quiet 2>/dev/null
REFRESH_LOAD="$(ls -t target/release/deps/refresh_load-* | grep -v '\.d$' | head -n1)"

WORK="$(mktemp -d)"
SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    SERVER_PID=""
}
trap 'stop_server; jobs -p | xargs -r kill 2>/dev/null; rm -rf "$WORK"' EXIT

# start_server DATABASE_URL [VAR=VALUE...]
start_server() {
    local url="$1"; shift
    env DATABASE_URL="$url" BIND_ADDR="127.0.0.1:$PORT" AUTH_RATE_LIMIT=0 JWT_SECRET="$SECRET" \
        RUST_LOG="${SERVER_LOG:-warn}" "$@" ./target/release/auth-api >>"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do curl -sf "$BASE/healthz" >/dev/null && return; sleep 0.1; done
    echo "the server did not start" >&2; cat "$WORK/server.log" >&2; exit 1
}
rps() { awk '/Requests\/sec/ {print $2}'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
