#!/usr/bin/env bash
# The main job: the Curbside server with its embedded SQLite store and the Toronto catalogue on
# 127.0.0.1:8311 (CURBSIDE_ADDR to change), after a short demo of the CLI drafting a request
# offline. Ctrl-C stops the server cleanly. State lives in ./data/.
set -euo pipefail
cd "$(dirname "$0")/.."

ADDR=${CURBSIDE_ADDR:-127.0.0.1:8311}
cargo build --release -q -p curbside -p curbside-server
BIN=target/release
mkdir -p data
DB=data/demo.db
rm -f "$DB" "$DB-wal" "$DB-shm"

cli() { echo "\$ curbside --db $DB $*"; "$BIN/curbside" --db "$DB" "$@" || true; echo; }
json() { "$BIN/curbside" --db "$DB" --json "$@"; }

echo "== Offline: a resident reports a pothole with no signal"
cli services
cli service CSROWR-12
ID=$(json draft new CSROWR-12 --description "Deep pothole in the curb lane, cyclists swerving" \
  --attr HAZARDS=cyclists | python3 -c 'import json,sys; print(json.load(sys.stdin)["request"]["id"])')
echo "\$ curbside --db $DB draft new CSROWR-12 --description … --attr HAZARDS=cyclists   → $ID"
echo
echo "-- submitting too early lists every problem, each at its field:"
cli draft submit "$ID"
cli draft set "$ID" --attr SIZE=large --lat 43.6453 --lon -79.3806 --accuracy 6 --source gps
cli draft submit "$ID"
cli draft list --state queued

echo "== Server: Open311 API on http://$ADDR (services.json, services/{code}.json, discovery.json)"
exec "$BIN/curbside-server" --addr "$ADDR" --data-dir data/server
