#!/usr/bin/env bash
# wrk against every authlab route, with the same connections and duration as `authlab compare`,
# printing the same ratios to /hello: the external check on the in-house load generator.
#
# Usage:
#   benches/wrk/run.sh                      # starts two instances (A: JWT denylist off, B: on)
#   TARGET=http://127.0.0.1:8080 benches/wrk/run.sh   # a running server (one instance)
#
# Settings (environment): CONNECTIONS=32 THREADS=1 DURATION=5s WARMUP=2s ROUNDS=3 WORKERS=1
#   AUTHLAB_BIN (default: $CARGO_TARGET_DIR or ./target, /release/authlab; built if missing)
#   REDIS_URL=redis://127.0.0.1:6379
# Needs: wrk, curl, jq; redis-cli to delete the run's keys afterwards.
# Load goes only to 127.0.0.1 (or TARGET); every run is bounded by DURATION.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export AUTHLAB_WRK_DIR="$here"

CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2s}
WORKERS=${WORKERS:-1}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
PASSWORD="wrk-password-0123456789"
USER_NAME="wrk-user"

for tool in wrk curl jq; do
    command -v "$tool" >/dev/null || { echo "error: $tool is required" >&2; exit 1; }
done

pids=()
prefix=""
db=""
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "$db" ]; then rm -f "$db" "$db-wal" "$db-shm"; fi
    if [ -n "$prefix" ] && command -v redis-cli >/dev/null; then
        redis-cli -u "$REDIS_URL" --scan --pattern "${prefix}*" | xargs -r -n 500 redis-cli -u "$REDIS_URL" unlink >/dev/null
    fi
}
trap cleanup EXIT

wait_healthy() { # URL
    for _ in $(seq 100); do
        curl -fsS "$1/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "error: $1 did not become healthy" >&2
    return 1
}

if [ -z "${TARGET:-}" ]; then
    bin=${AUTHLAB_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/authlab}
    if [ ! -x "$bin" ]; then
        (cd "$root" && cargo build --release --bin authlab)
    fi
    run=$(date +%s)-$$
    db="${TMPDIR:-/tmp}/authlab-wrk-$run.db"
    prefix="authlab-wrk:$run:"
    # One secret for both instances (from the environment, never a flag).
    AUTHLAB_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=')
    export AUTHLAB_JWT_SECRET
    common=(--database-url "sqlite://$db" --redis-url "$REDIS_URL" --redis-prefix "$prefix" --workers "$WORKERS")
    port_a=${PORT_A:-18081}
    port_b=${PORT_B:-18082}
    RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port_a" --jwt-denylist off "${common[@]}" &
    pids+=($!)
    wait_healthy "http://127.0.0.1:$port_a"
    RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port_b" --jwt-denylist on "${common[@]}" &
    pids+=($!)
    wait_healthy "http://127.0.0.1:$port_b"
    a="http://127.0.0.1:$port_a"
    b="http://127.0.0.1:$port_b"
else
    a="${TARGET%/}"
    b="$a"
fi

body=$(jq -nc --arg u "$USER_NAME" --arg p "$PASSWORD" '{username:$u,password:$p}')
status=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' -d "$body" "$a/users")
case "$status" in 201|409) ;; *) echo "error: registration answered $status" >&2; exit 1 ;; esac

login_bearer() { # BASE BACKEND
    curl -fsS -H 'content-type: application/json' -d "$body" "$1/$2/login" | jq -r .access_token
}
sid=$(curl -fsS -D - -o /dev/null -H 'content-type: application/json' -d "$body" "$a/session/login" \
    | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: sid=\([^;]*\).*/\1/p' | head -1)
redis_token=$(login_bearer "$a" redis)
jwt_a=$(login_bearer "$a" jwt)
jwt_b=$(login_bearer "$b" jwt)

results=()
run_route() { # NAME URL SCRIPT [VAR=VALUE]
    local name=$1 url=$2 script=$3
    shift 3
    # Warm-up (not recorded), then the measured run.
    env "$@" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$here/$script" "$url" >/dev/null
    local line
    line=$(env "$@" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$here/$script" "$url" | grep '^AUTHLAB ')
    results+=("$round|$name|$line")
    echo "round $round $name: ${line#AUTHLAB }" >&2
}

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION (warm-up $WARMUP), $ROUNDS round(s), against $a and $b" >&2
for round in $(seq "$ROUNDS"); do
    run_route "/hello" "$a/hello" hello.lua
    run_route "/session/me" "$a/session/me" cookie.lua AUTHLAB_SID="$sid"
    run_route "/redis/me" "$a/redis/me" bearer.lua AUTHLAB_TOKEN="$redis_token"
    if [ "$a" != "$b" ]; then
        run_route "/jwt/me (denylist off)" "$a/jwt/me" bearer.lua AUTHLAB_TOKEN="$jwt_a"
        run_route "/jwt/me (denylist on)" "$b/jwt/me" bearer.lua AUTHLAB_TOKEN="$jwt_b"
    else
        run_route "/jwt/me (as served)" "$a/jwt/me" bearer.lua AUTHLAB_TOKEN="$jwt_a"
    fi
    run_route "/hello (again)" "$a/hello" hello.lua
done

# The table, computed as `authlab compare` does: a round's baseline is the mean of its two /hello
# runs; a route's ratio is the median over rounds of (its req/s / its round's baseline), with the
# [min-max] over rounds; req/s and latencies are medians over rounds; errors are summed.
printf '%s\n' "${results[@]}" | awk -F'|' '
    function field(line, key,   n, i, kv, parts) {
        n = split(line, parts, " ")
        for (i = 1; i <= n; i++) { split(parts[i], kv, "="); if (kv[1] == key) return kv[2] }
        return ""
    }
    function median(list,   n, a, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
        r = $1; name = $2; line = $3
        if (!(name in seen)) { seen[name] = 1; order[++names] = name }
        rps[r, name] = field(line, "rps")
        p50[name] = p50[name] " " field(line, "p50_us"); p99[name] = p99[name] " " field(line, "p99_us")
        p999[name] = p999[name] " " field(line, "p999_us")
        non2xx[name] += field(line, "non2xx"); sock[name] += field(line, "socket_errors")
        if (name ~ /^\/hello/) { base[r] += rps[r, name]; nbase[r]++ }
        if (r > rounds) rounds = r
    }
    END {
        printf "%-24s %9s %20s %8s %8s %9s %8s %7s\n", "route", "req/s", "ratio [min-max]", "p50 us", "p99 us", "p99.9 us", "non-2xx", "socket"
        for (k = 1; k <= names; k++) {
            name = order[k]; ratios = ""; rates = ""; lo = 1e9; hi = 0
            for (r = 1; r <= rounds; r++) {
                q = rps[r, name] / (base[r] / nbase[r]); ratios = ratios " " q; rates = rates " " rps[r, name]
                if (q < lo) lo = q; if (q > hi) hi = q
            }
            printf "%-24s %9.0f %7.2fx [%.2f-%.2f] %8.0f %8.0f %9.0f %8d %7d\n", name, median(rates), median(ratios), lo, hi,
                median(p50[name]), median(p99[name]), median(p999[name]), non2xx[name], sock[name]
        }
    }'
