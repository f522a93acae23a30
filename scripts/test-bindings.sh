#!/usr/bin/env bash
# Builds curbside-ffi, generates its Kotlin, Swift and Python bindings with the workspace's own
# uniffi-bindgen, and runs the smoke tests and the app scenarios (a resident, a neighbour and an
# inspector against a live curbside-server): Python and Kotlin (plain JVM + JNA, kotlinx
# coroutines from the kotlinc distribution) for real; Swift only as far as this machine allows:
# its C header is compiled and linked, the Swift is not (no toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=target/bindings
KOTLINC=.tools/node_modules/kotlin-compiler/bin/kotlinc
JNA_JAR=$(dpkg -L libjna-java | grep '/jna.jar$' | head -n1)
COROUTINES_JAR=.tools/node_modules/kotlin-compiler/lib/kotlinx-coroutines-core-jvm.jar
KT_CP="$JNA_JAR:$COROUTINES_JAR"

cargo build -q -p curbside-ffi -p curbside-server

# A live server for the scenarios, on a free loopback port, with its data in a temporary folder.
WORK=$(mktemp -d /tmp/curbside-bindings.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export CURBSIDE_SERVER=http://127.0.0.1:$PORT CURBSIDE_ADMIN_KEY=bindings-admin
target/debug/curbside-server --addr "127.0.0.1:$PORT" --data-dir "$WORK/server" >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do curl -sf "$CURBSIDE_SERVER/healthz" >/dev/null && break; sleep 0.1; done
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
run "python scenario (live server)" env PYTHONPATH="$OUT" python3 bindings/tests/bindings/scenario.py
run "kotlin bindings: compile" "$KOTLINC" -nowarn -d "$OUT/curbside.jar" -classpath "$KT_CP" "$OUT"/org/curbside/*.kt
run "kotlin bindings: smoke" "$KOTLINC" -nowarn -classpath "$OUT/curbside.jar:$KT_CP" -J-ea \
  -J-Djna.library.path=target/debug -script bindings/tests/bindings/smoke.kts
SAMPLE=android-sample/shared/src/main/kotlin/org/curbside/sample
run "android sample's platform-free layer: compile" "$KOTLINC" -nowarn -d "$OUT/sample.jar" \
  -classpath "$OUT/curbside.jar:$KT_CP" "$SAMPLE"/*.kt
run "kotlin scenario (live server, through the sample's layer)" "$KOTLINC" -nowarn \
  -classpath "$OUT/sample.jar:$OUT/curbside.jar:$KT_CP" -J-ea -J-Djna.library.path=target/debug \
  -script bindings/tests/bindings/scenario.kts
run "packaging: build-android.sh and build-xcframework.sh generate the bindings the samples read" \
  sh -c 'bash -n scripts/build-android.sh && bash -n scripts/build-xcframework.sh &&
    ./scripts/build-android.sh --bindings-only && ./scripts/build-xcframework.sh --bindings-only'
android_jni_check() {
  if ! rustup target list --installed | grep -q '^aarch64-linux-android$'; then
    echo "SKIPPED: the aarch64-linux-android target is not installed (scripts/setup.sh could not add it)"
    return 0
  fi
  CARGO_TARGET_DIR=target/android-check cargo check -q --manifest-path bindings/android-check/Cargo.toml \
    --target aarch64-linux-android
}
run "android: the bindings' JNI entry point (TLS verifier) type-checks for aarch64-linux-android" android_jni_check
run "swift bindings: C header compiles, links and matches" python3 bindings/tests/bindings/swift_header_check.py "$OUT" target/debug
run "swift sample and scenario: parsed, binding symbols and labels exist (not compiled)" \
  .tools/venv/bin/python scripts/check-swift.py target/ios/swift/Curbside.swift ios-sample/Package.swift ios-sample/App \
  ios-sample/Sources/CurbsideSample bindings/tests/bindings/scenario.swift

echo "bindings: $passed passed, $failed failed"
[ "$failed" = 0 ]
