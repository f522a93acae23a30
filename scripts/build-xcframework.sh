#!/usr/bin/env bash
# Builds target/ios/CurbsideFFI.xcframework: a static library for iOS devices (aarch64-apple-ios)
# and one for the simulator (aarch64-apple-ios-sim and x86_64-apple-ios, joined with lipo), each
# with the generated C header and its module map; and copies the generated Curbside.swift into
# ios-sample/Sources/Curbside/. As mozilla/application-services does: static libraries (the app
# links one Rust library), the release-ffi profile, headers and module map laid out by hand, then
# `xcodebuild -create-xcframework`.
#
# Needs a Mac with Xcode 15 or newer and the Rust targets (`rustup target add aarch64-apple-ios
# aarch64-apple-ios-sim x86_64-apple-ios`).
#
#   scripts/build-xcframework.sh                  # the XCFramework and the Swift
#   scripts/build-xcframework.sh --bindings-only  # Swift, header and module map from a host
#                                                 # build (what CI runs: no Xcode there)
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=target/ios
PROFILE=release-ffi
NAME=CurbsideFFI

# The bindings come from a host build of the same source: the release libraries are stripped,
# and with their symbols goes the metadata uniffi-bindgen reads (the checksums the bindings
# check at load are the same on every target).
bindings() {
  cargo build -q -p curbside-ffi
  rm -rf "$OUT/swift"
  cargo run -q -p uniffi-bindgen -- generate target/debug/libcurbside_ffi.so --language swift \
    --no-format --out-dir "$OUT/swift" >/dev/null
  # The module map names the header of the framework's module.
  cat >"$OUT/swift/module.modulemap" <<MAP
module $NAME {
    header "$NAME.h"
    export *
}
MAP
  mkdir -p ios-sample/Sources/Curbside
  cp "$OUT/swift/Curbside.swift" ios-sample/Sources/Curbside/
  echo "build-xcframework: Swift bindings, $NAME.h and module.modulemap in $OUT/swift"
}

if [ "${1:-}" = "--bindings-only" ]; then
  bindings
  exit 0
fi

if [ "$(uname)" != Darwin ] || ! command -v xcodebuild >/dev/null 2>&1; then
  echo "build-xcframework: needs macOS with Xcode (xcodebuild)" >&2
  exit 1
fi
targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios)
rustup target add "${targets[@]}" >/dev/null
for t in "${targets[@]}"; do
  cargo build --profile "$PROFILE" -p curbside-ffi --target "$t" --locked
done
lib() { echo "target/$1/$PROFILE/libcurbside_ffi.a"; }

bindings

rm -rf "$OUT/$NAME.xcframework" "$OUT/staging"
for slice in ios ios-simulator; do
  mkdir -p "$OUT/staging/$slice/Headers"
  cp "$OUT/swift/$NAME.h" "$OUT/swift/module.modulemap" "$OUT/staging/$slice/Headers/"
done
cp "$(lib aarch64-apple-ios)" "$OUT/staging/ios/lib$NAME.a"
lipo -create "$(lib aarch64-apple-ios-sim)" "$(lib x86_64-apple-ios)" -output "$OUT/staging/ios-simulator/lib$NAME.a"
xcodebuild -create-xcframework \
  -library "$OUT/staging/ios/lib$NAME.a" -headers "$OUT/staging/ios/Headers" \
  -library "$OUT/staging/ios-simulator/lib$NAME.a" -headers "$OUT/staging/ios-simulator/Headers" \
  -output "$OUT/$NAME.xcframework"
rm -rf "$OUT/staging"
echo "build-xcframework: $OUT/$NAME.xcframework"
