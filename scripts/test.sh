#!/usr/bin/env bash
# Every test: formatting, lints, the Rust suites (core, CLI, server, end-to-end crash test),
# and the Kotlin, Python and Swift-header binding tests. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -q -- -D warnings
echo "== cargo test"
cargo test --workspace --locked 2>&1 | tee target/cargo-test.log | grep -vE '^(running 0 tests|test result: ok. 0 passed.*)$' | grep -vE '^\s*$'
echo "== bindings"
./scripts/test-bindings.sh
echo "rust: $(grep -E '^test result' target/cargo-test.log | awk '{p+=$4; f+=$6} END {print p" passed, "f" failed"}')"
