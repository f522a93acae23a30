#!/usr/bin/env bash
# Builds curbside-ffi, generates its Kotlin, Swift and Python bindings with the workspace's own
# uniffi-bindgen, and runs the smoke tests: Python and Kotlin (plain JVM + JNA) for real; Swift
# only as far as this machine allows: its C header is compiled, the Swift is not (no toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=target/bindings
KOTLINC=.tools/node_modules/kotlin-compiler/bin/kotlinc
JNA_JAR=$(dpkg -L libjna-java | grep '/jna.jar$' | head -n1)

cargo build -q -p curbside-ffi
rm -rf "$OUT"
cargo run -q -p uniffi-bindgen -- generate target/debug/libcurbside_ffi.so \
  --language kotlin --language swift --language python --no-format --out-dir "$OUT" >/dev/null
cp target/debug/libcurbside_ffi.so "$OUT/"

passed=0
failed=0
run() {
  local name=$1; shift
  echo "== $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $name"; fi
}

run "python bindings" env PYTHONPATH="$OUT" python3 bindings/tests/bindings/smoke.py
run "kotlin bindings: compile" "$KOTLINC" -nowarn -d "$OUT/curbside.jar" -classpath "$JNA_JAR" "$OUT"/org/curbside/*.kt
run "kotlin bindings: smoke" "$KOTLINC" -nowarn -classpath "$OUT/curbside.jar:$JNA_JAR" -J-ea \
  -J-Djna.library.path=target/debug -script bindings/tests/bindings/smoke.kts
run "swift bindings: C header compiles, links and matches" python3 bindings/tests/bindings/swift_header_check.py "$OUT" target/debug

echo "bindings: $passed passed, $failed failed"
[ "$failed" = 0 ]
