#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine with Rust, and nothing that is already
# there: Debian's JNA (Kotlin bindings on the plain JVM), a JDK, Node's npm for kotlinc, and the
# Rust components for formatting and lints. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

KOTLIN_VERSION=2.4.20
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_debs=()
dpkg -s libjna-java >/dev/null 2>&1 || need_debs+=(libjna-java)
command -v java >/dev/null 2>&1 || need_debs+=(openjdk-17-jdk-headless)
command -v npm >/dev/null 2>&1 || need_debs+=(nodejs npm)
command -v python3 >/dev/null 2>&1 || need_debs+=(python3)
command -v cc >/dev/null 2>&1 || need_debs+=(gcc)
command -v curl >/dev/null 2>&1 || need_debs+=(curl)
# The PostgreSQL backend's tests start a server of their own (scripts/postgres.sh).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_debs+=(postgresql)
if [ ${#need_debs[@]} -gt 0 ]; then
  echo "setup: installing ${need_debs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_debs[@]}" >/dev/null
fi

for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component"
  fi
done

# The Android target's standard library, to type-check the bindings' JNI entry point
# (bindings/android-check); rustup fetches it. Without it that one check says it was skipped.
if ! rustup target list --installed 2>/dev/null | grep -q '^aarch64-linux-android$'; then
  rustup target add aarch64-linux-android >/dev/null 2>&1 ||
    echo "setup: could not add the aarch64-linux-android target (the Android JNI check will be skipped)"
fi

if [ ! -x .tools/node_modules/kotlin-compiler/bin/kotlinc ]; then
  echo "setup: installing kotlinc $KOTLIN_VERSION (npm kotlin-compiler) into .tools/"
  npm install --silent --no-audit --no-fund --prefix .tools "kotlin-compiler@$KOTLIN_VERSION" >/dev/null
fi

# Open311 as others see it (scripts/test-open311-clients.sh): schemathesis over the OpenAPI
# document, and georeport, a third-party Open311 client; in a virtualenv of their own.
# The hand-written Swift (no toolchain here) is parsed with tree-sitter (scripts/check-swift.py).
SCHEMATHESIS_VERSION=4.32.5
GEOREPORT_VERSION=0.3.1
TREE_SITTER_VERSION=0.26.1
TREE_SITTER_SWIFT_VERSION=0.7.4
if ! .tools/venv/bin/python -c "import georeport, schemathesis, tree_sitter, tree_sitter_swift" 2>/dev/null; then
  echo "setup: installing schemathesis $SCHEMATHESIS_VERSION, georeport $GEOREPORT_VERSION and tree-sitter-swift $TREE_SITTER_SWIFT_VERSION into .tools/venv"
  python3 -m venv .tools/venv 2>/dev/null || {
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv .tools/venv
  }
  .tools/venv/bin/pip install -q --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" "georeport==$GEOREPORT_VERSION" \
    "tree-sitter==$TREE_SITTER_VERSION" "tree-sitter-swift==$TREE_SITTER_SWIFT_VERSION"
fi
