#!/usr/bin/env bash
# Builds the Android library: libcurbside_ffi.so for arm64-v8a, armeabi-v7a and x86_64 with
# cargo-ndk into target/android/jniLibs/<abi>/, and the generated Kotlin into
# target/android/kotlin/ (android-sample's modules read both). As mozilla/application-services
# does: one Rust library per app ("megazord"), the release-ffi profile (LTO, one codegen unit,
# stripped), bindings generated from a host build of the same source.
#
# Needs on a developer's machine: the Android NDK (ANDROID_NDK_HOME, r26 or newer), cargo-ndk
# (`cargo install cargo-ndk`), and the three Rust targets (`rustup target add aarch64-linux-android
# armv7-linux-androideabi x86_64-linux-android`).
#
#   scripts/build-android.sh                  # libraries and bindings
#   scripts/build-android.sh --bindings-only  # the Kotlin only, from a host build (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=target/android
PROFILE=release-ffi
ABIS=(arm64-v8a armeabi-v7a x86_64)

# The bindings come from a host build of the same source: the release libraries are stripped,
# and with their symbols goes the metadata uniffi-bindgen reads (the checksums the bindings
# check at load are the same on every target).
bindings() {
  cargo build -q -p curbside-ffi
  rm -rf "$OUT/kotlin"
  cargo run -q -p uniffi-bindgen -- generate target/debug/libcurbside_ffi.so --language kotlin \
    --no-format --out-dir "$OUT/kotlin" >/dev/null
  echo "build-android: Kotlin bindings in $OUT/kotlin"
}

if [ "${1:-}" = "--bindings-only" ]; then
  bindings
  exit 0
fi

if ! command -v cargo-ndk >/dev/null 2>&1; then
  echo "build-android: cargo-ndk is missing: cargo install cargo-ndk" >&2
  exit 1
fi
if [ -z "${ANDROID_NDK_HOME:-}" ] || [ ! -d "$ANDROID_NDK_HOME" ]; then
  echo "build-android: set ANDROID_NDK_HOME to an Android NDK (r26 or newer)" >&2
  exit 1
fi
targets=(aarch64-linux-android armv7-linux-androideabi x86_64-linux-android)
rustup target add "${targets[@]}" >/dev/null

rm -rf "$OUT/jniLibs"
args=()
for abi in "${ABIS[@]}"; do args+=(-t "$abi"); done
# API 26: the sample's minSdk.
cargo ndk "${args[@]}" --platform 26 -o "$OUT/jniLibs" build --profile "$PROFILE" -p curbside-ffi --locked
bindings
for abi in "${ABIS[@]}"; do
  printf 'build-android: %-12s %s bytes\n' "$abi" "$(stat -c %s "$OUT/jniLibs/$abi/libcurbside_ffi.so")"
done
