#!/usr/bin/env bash
# musubi-core is the part of musubi without I/O (ARCHITECTURE.md, invariant "core has no
# I/O"): it must build on its own, with and without the card protocol, and its dependency
# tree must hold no store, network, PC/SC, async runtime or file encryption crate. Fails
# with the offending crates named.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo check -p musubi-core --locked
cargo check -p musubi-core --no-default-features --locked

forbidden='^(rusqlite|libsqlite3-sys|age|quinn|quinn-proto|rustls|tokio|mio|socket2|pcsc|pcsc-sys|postgres|tokio-postgres|r2d2|musubi-engine) '
found="$(cargo tree -p musubi-core -e normal --prefix none --locked | sed 's/ (\*)$//' | sort -u | grep -E "$forbidden" || true)"
if [ -n "$found" ]; then
  echo "check-core: musubi-core depends on I/O crates it must not use:" >&2
  echo "$found" >&2
  exit 1
fi
echo "check-core: musubi-core builds alone and holds no I/O dependency"
