# Sourced by test.sh (and the benchmarks' notes): a throwaway PostgreSQL server on a loopback
# port, in a temporary directory, stopped when the calling shell exits. Debian's server
# binaries; `initdb` refuses root, so as root the server runs as the `postgres` user.
#   start_postgres   sets CURBSIDE_TEST_DATABASE=postgres://postgres@127.0.0.1:PORT/postgres

pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1
}

start_postgres() {
  local bin dir port as
  bin=$(pg_bin)
  [ -x "$bin/initdb" ] || { echo "postgres: no server binaries (apt-get install postgresql)" >&2; return 1; }
  dir=$(mktemp -d /tmp/curbside-pg.XXXXXX)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as=()
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$dir"
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  # Tests create many small databases and sync them hard: fsync stays on (nothing is
  # acknowledged before it is on disk), the rest is sized for a 2-core test machine.
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=400 -c shared_buffers=256MB" \
    start >/dev/null || { cat "$dir/server.log" >&2; return 1; }
  PG_DIR=$dir
  PG_AS=("${as[@]}")
  PG_BIN=$bin
  trap stop_postgres EXIT
  export CURBSIDE_TEST_DATABASE="postgres://postgres@127.0.0.1:$port/postgres"
  echo "postgres: $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($dir)"
}

stop_postgres() {
  if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
    "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}
