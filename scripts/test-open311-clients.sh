#!/usr/bin/env bash
# Open311 as others see it, against a live curbside-server (SQLite): a request posted over
# Open311 and one synced from the CLI, then
#   - schemathesis (PyPI) over /openapi.json: no 5xx, every answer's status, content type and
#     body as the document says;
#   - georeport (PyPI), a third-party client, in JSON and XML.
# Both come from .tools/venv (scripts/setup.sh). Binaries from `cargo build` (debug).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.tools/venv
BIN=target/debug
cargo build -q -p curbside -p curbside-server
WORK=$(mktemp -d /tmp/curbside-open311.XXXXXX)
ADMIN=open311-clients-admin
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
CURBSIDE_ADMIN_KEY=$ADMIN "$BIN/curbside-server" --addr "127.0.0.1:$PORT" --data-dir "$WORK/server" \
  >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done

# A request over Open311, with an API key.
KEY=$("$BIN/curbside-server" --data-dir "$WORK/server" api-key create "client tests" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
POSTED=$(curl -sf -X POST "$BASE/requests.json" \
  --data-urlencode "api_key=$KEY" -d service_code=TS-STREETLIGHT-OUT -d lat=43.6534 \
  -d long=-79.3841 -d 'attribute[PROBLEM]=out' --data-urlencode 'description=Dark since Tuesday' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["service_request_id"])')

# A request from the app (the CLI over the core), synced.
C="$BIN/curbside --db $WORK/phone.db"
$C register --server "$BASE" >/dev/null
ID=$($C --json draft new CSROWR-12 --description "Deep pothole" --attr SIZE=large \
  --lat 43.6453 --lon -79.3806 --accuracy 6 --source gps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["request"]["id"])')
$C draft submit "$ID" >/dev/null
$C sync >/dev/null
SYNCED=$($C --json draft show "$ID" | python3 -c 'import json,sys; print(json.load(sys.stdin)["request"]["service_request_id"])')

# Staff's token, for the standards report.
TOKEN=$(curl -sf -X POST "$BASE/v1/devices" -H 'Content-Type: application/json' \
  -d "{\"role\":\"inspector\",\"wards\":[\"10\"],\"admin_key\":\"$ADMIN\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

echo "== schemathesis over $BASE/openapi.json"
"$VENV/bin/schemathesis" run "$BASE/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples 50 -H "Authorization: Bearer $TOKEN" --no-color >"$WORK/schemathesis.log" 2>&1 ||
  { cat "$WORK/schemathesis.log"; exit 1; }
grep -E 'generated, .* passed|failed' "$WORK/schemathesis.log" | tail -n 2

echo "== georeport (a third-party Open311 client), JSON and XML"
"$VENV/bin/python" sync-server/tests/clients/georeport_client.py "$BASE" "$POSTED" "$SYNCED"
