#!/usr/bin/env bash
# The demo behind `make run`: a throwaway PostgreSQL (unless DATABASE_URL is set), a demo
# org and key (the org on a demo price plan), keysync, an echo backend (unless
# BACKEND_URLS is set) and Envoy with the filter. Prints curl lines to try; Ctrl-C stops
# everything it started.
# GATEWAY_FILTER picks what checks the keys: wasm (default, envoy/gateway.yaml), native
# (the dynamic module, envoy/native.yaml) or ext_authz (Envoy asks keysync,
# envoy/ext-authz.yaml).
# CREDENTIALS (JSON, the filter's `credentials`: [{"query":"api_key"}, ...]) says where
# keys may be; given to the filter through envoy/render.py and to keysync (ext_authz
# mode) as KEYSYNC_CREDENTIALS.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN="$ROOT/.run"
KEYSYNC="${KEYSYNC_BIN:-$ROOT/target/debug/keysync}"
ECHO_BACKEND="${ECHO_BACKEND_BIN:-$ROOT/target/debug/echo-backend}"
ENVOY="${ENVOY_BIN:-$ROOT/.venv/envoy-1.40.0}"
FILTER_WASM="${KEYSYNC_FILTER_WASM:-$ROOT/target/wasm32-wasip1/release/keysync_filter.wasm}"
NATIVE_DIR="${ENVOY_DYNAMIC_MODULES_SEARCH_PATH:-$ROOT/target/x86_64-unknown-linux-gnu/native-release}"
GATEWAY_FILTER="${GATEWAY_FILTER:-wasm}"
case "$GATEWAY_FILTER" in
  wasm) TEMPLATE=gateway.yaml; FILTER_FILE="$FILTER_WASM" ;;
  native)
    TEMPLATE=native.yaml
    FILTER_FILE="$NATIVE_DIR/libkeysync_filter_native.so"
    export ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$NATIVE_DIR"
    ;;
  ext_authz) TEMPLATE=ext-authz.yaml; FILTER_FILE="" ;;
  *) echo "error: GATEWAY_FILTER must be wasm, native or ext_authz, not '$GATEWAY_FILTER'" >&2; exit 1 ;;
esac

export GATEWAY_PORT="${GATEWAY_PORT:-8080}"
export ENVOY_ADMIN_PORT="${ENVOY_ADMIN_PORT:-9901}"
export REFRESH_INTERVAL="${REFRESH_INTERVAL:-15m}"
export KEYSYNC_GRPC_ADDR="${KEYSYNC_GRPC_ADDR:-127.0.0.1:50051}"
export KEYSYNC_HTTP_ADDR="${KEYSYNC_HTTP_ADDR:-127.0.0.1:9090}"
export KEYSYNC_API_ADDR="${KEYSYNC_API_ADDR:-127.0.0.1:9091}"
export KEYSYNC_FILTER_WASM="$FILTER_WASM"
if [ -n "${CREDENTIALS:-}" ]; then export KEYSYNC_CREDENTIALS="$CREDENTIALS"; fi
PG_PORT="${DEMO_POSTGRES_PORT:-54329}"

for bin in "$KEYSYNC" "$ECHO_BACKEND" "$ENVOY" ${FILTER_FILE:+"$FILTER_FILE"}; do
  [ -e "$bin" ] || { echo "error: $bin is missing: run 'make run', which builds it" >&2; exit 1; }
done

pids=()
pg_ctl_cmd=()
pg_dir=""
cleanup() {
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ] || [ ${#pg_ctl_cmd[@]} -gt 0 ]; then
    echo
    echo "stopping the demo..."
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ ${#pg_ctl_cmd[@]} -gt 0 ]; then "${pg_ctl_cmd[@]}" -m fast stop >/dev/null 2>&1 || true; fi
  if [ -n "$pg_dir" ]; then rm -rf "$pg_dir"; fi
  exit "${1:-0}"
}
trap 'cleanup $?' EXIT
trap 'cleanup 130' INT
trap 'cleanup 143' TERM

# Fails early, before anything is started or deleted, when a port is taken (often by a
# demo still running in another terminal).
require_free_port() {
  local addr=$1 what=$2
  python3 - "$addr" "$what" <<'PY'
import socket, sys
addr, what = sys.argv[1], sys.argv[2]
host, _, port = addr.rpartition(":")
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"
try:
    s.bind((host or "127.0.0.1", int(port)))
except OSError as e:
    sys.exit(f"error: {what} needs {addr}, which is in use ({e.strerror}); is another demo running?")
PY
}

# Polls `url` until it answers 200, or fails after `seconds`.
wait_http() {
  local url=$1 seconds=$2 what=$3
  python3 - "$url" "$seconds" "$what" <<'PY'
import sys, time, urllib.request
url, seconds, what = sys.argv[1], float(sys.argv[2]), sys.argv[3]
deadline = time.time() + seconds
while time.time() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
sys.exit(f"error: {what} did not come up ({url})")
PY
}

json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

require_free_port "0.0.0.0:$GATEWAY_PORT" "the gateway (GATEWAY_PORT)"
require_free_port "127.0.0.1:$ENVOY_ADMIN_PORT" "Envoy's admin (ENVOY_ADMIN_PORT)"
require_free_port "$KEYSYNC_GRPC_ADDR" "keysync's gRPC API (KEYSYNC_GRPC_ADDR)"
require_free_port "$KEYSYNC_HTTP_ADDR" "keysync's admin (KEYSYNC_HTTP_ADDR)"
[ "$KEYSYNC_API_ADDR" = off ] || require_free_port "$KEYSYNC_API_ADDR" "keysync's operator API (KEYSYNC_API_ADDR)"
[ -n "${BACKEND_URLS:-}" ] || require_free_port "127.0.0.1:3000" "the echo backend"
[ -n "${DATABASE_URL:-}" ] || require_free_port "127.0.0.1:$PG_PORT" "the demo PostgreSQL (DEMO_POSTGRES_PORT)"

mkdir -p "$RUN"

if [ -z "${DATABASE_URL:-}" ]; then
  # PostgreSQL refuses to run as root: run it as the postgres user then. Its data lives
  # outside the checkout, which the postgres user may not be able to enter (a clone
  # under /root, any 0700 folder): in /dev/shm as the end-to-end tests' does (else the
  # temp folder), gone when the demo stops. Its log is opened here, so it stays in .run/.
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  as_pg=()
  rm -rf "$RUN/postgres"
  pg_dir=$(mktemp -d /dev/shm/keysync-demo-postgres.XXXXXX 2>/dev/null ||
    mktemp -d -t keysync-demo-postgres.XXXXXX)
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$pg_dir"
    as_pg=(runuser -u postgres --)
  fi
  echo "starting a throwaway PostgreSQL on 127.0.0.1:$PG_PORT (data in $pg_dir, log .run/postgres.log)"
  "${as_pg[@]}" "$PG_BIN/initdb" -D "$pg_dir/data" -U keysync --auth=trust -E UTF8 >/dev/null
  pg_ctl_cmd=("${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$pg_dir/data")
  "${pg_ctl_cmd[@]}" -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $pg_dir" \
    -w start >"$RUN/postgres.log" 2>&1
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U keysync keysync
  export DATABASE_URL="postgres://keysync@127.0.0.1:$PG_PORT/keysync"
fi

"$KEYSYNC" migrate
ORG_ID=$("$KEYSYNC" orgs create --name "Demo Org" --json | json_field org_id)
KEY_JSON=$("$KEYSYNC" keys create --org-id "$ORG_ID" --name "demo key" --env test --json)
KEY=$(echo "$KEY_JSON" | json_field key)
KEY_ID=$(echo "$KEY_JSON" | json_field key_id)
# A price plan for the demo org, so that `keysync usage --cost` prices the traffic sent
# (docs/costs.md); kept from an earlier run on the same DATABASE_URL.
"$KEYSYNC" plans show demo >/dev/null 2>&1 ||
  "$KEYSYNC" plans create --name demo --currency EUR --base-fee 10.00 --included 1000 \
    --tier inf:0.50 --json >/dev/null
"$KEYSYNC" orgs set-plan "$ORG_ID" demo --json >/dev/null

API_SHOWN="http://$KEYSYNC_API_ADDR/v1/"
[ "$KEYSYNC_API_ADDR" != off ] || API_SHOWN="off"
# The web console (docs/console.md) and an admin token to sign in with, shown once here.
CONSOLE_SHOWN="off (KEYSYNC_API_ADDR=off)"
if [ "$KEYSYNC_API_ADDR" != off ]; then
  ADMIN_TOKEN=$("$KEYSYNC" admin-tokens create --name "demo console" --json | json_field token)
  CONSOLE_SHOWN="http://$KEYSYNC_API_ADDR/console/ (sign in with the admin token $ADMIN_TOKEN)"
fi
echo "starting keysync (gRPC $KEYSYNC_GRPC_ADDR, admin http://$KEYSYNC_HTTP_ADDR, operator API $API_SHOWN; log .run/keysync.log)"
"$KEYSYNC" serve >"$RUN/keysync.log" 2>&1 &
pids+=($!)
wait_http "http://$KEYSYNC_HTTP_ADDR/readyz" 60 keysync

if [ -z "${BACKEND_URLS:-}" ]; then
  echo "starting the echo backend on 127.0.0.1:3000 (log .run/echo-backend.log)"
  "$ECHO_BACKEND" --listen 127.0.0.1:3000 >"$RUN/echo-backend.log" 2>&1 &
  pids+=($!)
  export BACKEND_URLS="api-service=http://127.0.0.1:3000"
fi

python3 "$ROOT/envoy/render.py" "$ROOT/envoy/$TEMPLATE" >"$RUN/envoy.yaml"
echo "starting Envoy with the $GATEWAY_FILTER filter on port $GATEWAY_PORT (admin http://127.0.0.1:$ENVOY_ADMIN_PORT; log .run/envoy.log)"
"$ENVOY" -c "$RUN/envoy.yaml" --concurrency 2 --disable-hot-restart >"$RUN/envoy.log" 2>&1 &
pids+=($!)
# The native filter holds Envoy's readiness until its first full sync.
wait_http "http://127.0.0.1:$ENVOY_ADMIN_PORT/ready" 60 Envoy
# The gateway is up only once the filter's store holds a complete sync of the keys:
# until then /health answers 503, and a key served by a lookup alone would turn into
# 503s if keysync stalled.
wait_http "http://127.0.0.1:$GATEWAY_PORT/health" 300 "the gateway's first key sync"

# Paths that reach the configured backends (envoy/render.py's routes): any path with one
# backend, /<name>/... with several.
BACKEND_NAMES=()
IFS=',' read -ra backend_items <<<"$BACKEND_URLS"
for item in "${backend_items[@]}"; do
  name="${item%%=*}"
  name="${name//[[:space:]]/}"
  [ -z "$name" ] || BACKEND_NAMES+=("$name")
done
TRY_LINES=""
if [ "${#BACKEND_NAMES[@]}" -le 1 ]; then
  TRY_PATH=/hello
  TRY_LINES="  # 200: forwarded, the backend sees x-org-id and x-api-key-id, not the key
  curl -i http://localhost:$GATEWAY_PORT$TRY_PATH -H 'Authorization: Bearer $KEY'
"
else
  TRY_PATH="/${BACKEND_NAMES[0]}/"
  for name in "${BACKEND_NAMES[@]}"; do
    TRY_LINES+="  # 200: forwarded to $name (/$name/... reaches its /...), which sees x-org-id and x-api-key-id, not the key
  curl -i http://localhost:$GATEWAY_PORT/$name/ -H 'Authorization: Bearer $KEY'
"
  done
fi

cat <<MSG

The gateway is up on http://localhost:$GATEWAY_PORT, in front of $BACKEND_URLS.
Demo org $ORG_ID, key id $KEY_ID. Try:

$TRY_LINES
  # 401: no key
  curl -i http://localhost:$GATEWAY_PORT$TRY_PATH

  # 403: a key nobody issued
  curl -i http://localhost:$GATEWAY_PORT$TRY_PATH -H 'Authorization: Bearer sk_test_NotARealKeyNotARealKey00'

Operator commands (another terminal):
  DATABASE_URL='$DATABASE_URL' target/debug/keysync keys list --org-id $ORG_ID
  DATABASE_URL='$DATABASE_URL' target/debug/keysync keys revoke $KEY_ID
  DATABASE_URL='$DATABASE_URL' target/debug/keysync usage --org-id $ORG_ID --by endpoint
  DATABASE_URL='$DATABASE_URL' target/debug/keysync usage --org-id $ORG_ID --cost
  (what this month costs on the demo plan: EUR 10.00, 1,000 requests included, 0.50 per 1,000 beyond)
  (a revocation reaches Envoy within milliseconds over the watch stream; the full refresh every $REFRESH_INTERVAL is the safety net)

Web console: $CONSOLE_SHOWN
Operator HTTP API: $API_SHOWN (with an admin token: DATABASE_URL='$DATABASE_URL' target/debug/keysync admin-tokens create --name me)

Stats: curl -s localhost:$ENVOY_ADMIN_PORT/stats | grep keysync ; curl -s $KEYSYNC_HTTP_ADDR/metrics
Logs: .run/*.log. Ctrl-C stops everything.
MSG

wait -n "${pids[@]}" || true
echo "a demo process exited; see .run/*.log" >&2
exit 1
