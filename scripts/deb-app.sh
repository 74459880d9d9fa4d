#!/usr/bin/env bash
# The musubi (tablet app) Debian package: build it with cargo-deb, then check it.
#
#   scripts/deb-app.sh            check mode (CI): packages the binary of the test build
#                                 (`cargo test --workspace --no-run`, a no-op after
#                                 scripts/test.sh) into target/deb-check-app/debian/, so CI
#                                 does not compile the app a second time in release mode
#                                 (MUSUBI_DEB_BIN=PATH: package that binary instead).
#   scripts/deb-app.sh --release  the package to ship: a release build, packaged into
#                                 target/debian/musubi_VERSION_ARCH.deb.
#
# Both then check the package: control fields, file list (binary, desktop entry, icon, man
# pages, completions, the font's licence), the desktop entry (desktop-file-validate, from
# scripts/setup.sh); install it into a throwaway root (dpkg --root), run the installed
# binary from there (--version, --help with the exit codes, a store and its log file),
# and remove it. Installs cargo-deb (`cargo install --locked cargo-deb`) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/deb-common.sh
source scripts/lib/deb-common.sh
deb_build "scripts/deb-app.sh" musubi-app musubi deb-check-app "$@"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Control fields.
dpkg-deb -f "$deb" > "$work/control"
check "package name" grep -qx 'Package: musubi' "$work/control"
check "depends on libc" grep -Eq '^Depends: .*libc6' "$work/control"
check "depends on the window's run-time libraries" grep -Eq '^Depends: .*libegl1.*libxkbcommon-x11-0' "$work/control"
check "recommends pcscd" grep -qx 'Recommends: pcscd' "$work/control"
check "description" grep -q '^Description: musubi tablet app' "$work/control"

# File list.
dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's#^\./#/#' > "$work/files"
for f in \
  /usr/bin/musubi \
  /usr/share/applications/musubi.desktop \
  /usr/share/icons/hicolor/scalable/apps/musubi.svg \
  /usr/share/man/man1/musubi.1.gz \
  /usr/share/man/man1/musubi-doc-import.1.gz \
  /usr/share/man/man1/musubi-survey-submit.1.gz \
  /usr/share/man/man1/musubi-export-pdf.1.gz \
  /usr/share/man/man1/musubi-sync.1.gz \
  /usr/share/bash-completion/completions/musubi \
  /usr/share/zsh/vendor-completions/_musubi \
  /usr/share/fish/vendor_completions.d/musubi.fish \
  /usr/share/doc/musubi/LICENSE-IPAexGothic.txt \
  /usr/share/doc/musubi/fonts.md \
  /usr/share/doc/musubi/README.md \
  /usr/share/doc/musubi/copyright; do
  check "file $f in the package" grep -qx "$f" "$work/files"
done
check "no hidden subcommand's man page" bash -c "! grep -q generate-assets '$work/files'"
check "no maintainer scripts" bash -c "dpkg-deb -e '$deb' '$work/DEBIAN' && ! ls '$work/DEBIAN' | grep -Eq 'inst|rm'"

# Install into a throwaway root: dpkg's database, nothing else.
root="$work/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers" \
  "$root/var/log"
: > "$root/var/lib/dpkg/status"
: > "$root/var/lib/dpkg/available"
dpkg --root="$root" --force-script-chrootless --force-depends --log="$work/dpkg.log" \
  -i "$deb" > "$work/install.out" 2>&1 || { cat "$work/install.out" >&2; exit 1; }
check "installed" bash -c "dpkg --root='$root' -s musubi | grep -q '^Status: install ok installed'"

desktop="$root/usr/share/applications/musubi.desktop"
check "desktop entry: Japanese name" grep -qx 'Name\[ja\]=結び（musubi）' "$desktop"
check "desktop entry: English fallback" grep -qx 'Name=musubi' "$desktop"
check "desktop entry: Japanese comment" grep -q '^Comment\[ja\]=' "$desktop"
check "desktop entry: categories" grep -qx 'Categories=Office;MedicalSoftware;' "$desktop"
check "desktop entry: runs the installed binary" grep -qx 'Exec=musubi' "$desktop"
check "desktop entry: the packaged icon" grep -qx 'Icon=musubi' "$desktop"
if command -v desktop-file-validate >/dev/null 2>&1; then
  check "desktop-file-validate" desktop-file-validate "$desktop"
else
  echo "desktop-file-validate not installed (scripts/setup.sh installs desktop-file-utils): skipped" >&2
fi
check "icon is SVG" bash -c "head -c 400 '$root/usr/share/icons/hicolor/scalable/apps/musubi.svg' | grep -q '<svg'"

check "installed binary runs" bash -c "'$root/usr/bin/musubi' --version | grep -q '^musubi '"
check "help names the exit codes" bash -c "'$root/usr/bin/musubi' --help | grep -q 'Exit codes'"
check "man page renders with the exit codes" bash -c "zcat '$root/usr/share/man/man1/musubi.1.gz' | grep -q 'Exit codes'"
check "bash completion loads" bash -c "source '$root/usr/share/bash-completion/completions/musubi' && complete -p musubi >/dev/null"

# The installed binary on a throwaway store: it works and keeps its log in the data
# directory, owner-only.
data="$work/data"
MUSUBI_PASSPHRASE=deb-check MUSUBI_KDF_WORK_FACTOR=10 \
  "$root/usr/bin/musubi" --data-dir "$data" init --office 1370100016 >/dev/null 2>&1
check "init with the installed binary" test -f "$data/store.toml"
MUSUBI_PASSPHRASE=deb-check "$root/usr/bin/musubi" --data-dir "$data" doc list >/dev/null 2>&1
check "log file in the data directory" grep -q 'store opened' "$data/logs/musubi.log"
check "log file is 0600" test "$(stat -c '%a' "$data/logs/musubi.log")" = 600

# Remove: nothing of the package stays; a user's data directory is never the package's.
dpkg --root="$root" --force-script-chrootless --log="$work/dpkg.log" -P musubi > /dev/null 2>&1
check "binary removed" test ! -e "$root/usr/bin/musubi"
check "desktop entry removed" test ! -e "$desktop"
check "data directory kept" test -f "$data/store.toml"

echo "deb-app: $passed passed, $failures failed"
[ "$failures" -eq 0 ]
