#!/usr/bin/env bash
# Every test: formatting, lints, the Rust suites (core, CLI, server, end-to-end crash test), the
# server's suite again on PostgreSQL (a throwaway server on a loopback port), the Kotlin,
# Python and Swift-header binding tests, and Open311 clients (schemathesis, georeport) against a
# live server. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -q -- -D warnings
quiet() { grep -vE '^(running 0 tests|test result: ok. 0 passed.*)$' | grep -vE '^\s*$'; }
echo "== cargo test (the server on SQLite)"
cargo test --workspace --locked 2>&1 | tee target/cargo-test.log | quiet
echo "== cargo test -p curbside-server (the server on PostgreSQL, a database per test)"
. scripts/postgres.sh
start_postgres
cargo test -p curbside-server --locked 2>&1 | tee target/cargo-test-postgres.log | quiet
unset CURBSIDE_TEST_DATABASE
echo "== bindings"
./scripts/test-bindings.sh
echo "== Open311 clients (schemathesis, georeport) against a live server"
./scripts/test-open311-clients.sh
echo "rust: $(cat target/cargo-test.log target/cargo-test-postgres.log | grep -E '^test result' | awk '{p+=$4; f+=$6} END {print p" passed, "f" failed"}')"
