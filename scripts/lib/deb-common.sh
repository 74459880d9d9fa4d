# shellcheck shell=bash
# Shared by scripts/deb.sh (musubi-relay) and scripts/deb-app.sh (musubi): builds the
# package with cargo-deb (installing cargo-deb when missing) and defines `check`, which
# counts what the calling script verifies in $passed and $failures.

# deb_build SCRIPT PACKAGE BINARY CHECK_DIR [--release]
#   check mode (default, CI): packages the binary of the test build (`cargo test
#   --workspace --no-run`, a no-op after scripts/test.sh; MUSUBI_DEB_BIN=PATH packages that
#   binary instead) from target/CHECK_DIR, so CI does not compile it again in release mode.
#   --release: a release build, packaged into target/debian/.
# Sets $td (the target directory cargo-deb used) and $deb (the package built).
deb_build() {
  local script=$1 package=$2 binary=$3 check_dir=$4
  shift 4
  local mode=check
  if [ "${1:-}" = "--release" ]; then
    mode=release
  elif [ $# -gt 0 ]; then
    echo "usage: $script [--release]" >&2
    exit 2
  fi
  if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "== installing cargo-deb"
    cargo install --locked cargo-deb
  fi
  if [ "$mode" = release ]; then
    td="${CARGO_TARGET_DIR:-$PWD/target}"
    cargo build --release --locked -p "$package" --bin "$binary"
  else
    # cargo-deb packages `target/release/…` of the target directory it is given; in check
    # mode that is target/CHECK_DIR, holding a copy of the test build's binary.
    td="$PWD/target/$check_dir"
    local bin="${MUSUBI_DEB_BIN:-}"
    if [ -z "$bin" ]; then
      cargo test --workspace --no-run --quiet --locked
      bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/$binary"
    fi
    mkdir -p "$td/release"
    cp "$bin" "$td/release/$binary"
  fi
  local assets="$td/release/deb-assets"
  rm -rf "$assets" "$td/debian"
  "$td/release/$binary" generate-assets --out "$assets"
  gzip -9n "$assets"/man/*.1
  deb=$(CARGO_TARGET_DIR="$td" cargo deb -p "$package" --no-build --locked --fast --strip \
    --output "$td/debian/" | tail -n 1)
  echo "== built $deb"
}

failures=0
passed=0
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
  else
    echo "FAILED: $what" >&2
    failures=$((failures + 1))
  fi
}
