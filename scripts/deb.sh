#!/usr/bin/env bash
# The musubi-relay Debian package: build it with cargo-deb, then check it.
#
#   scripts/deb.sh            check mode (CI): packages the binary of the test build
#                             (`cargo test --workspace --no-run`, a no-op after
#                             scripts/test.sh) into target/deb-check/debian/, so CI does
#                             not compile the relay a second time in release mode
#                             (MUSUBI_DEB_BIN=PATH: package that binary instead).
#   scripts/deb.sh --release  the package to ship: a release build, packaged into
#                             target/debian/musubi-relay_VERSION_ARCH.deb.
#
# Both then check the package: control fields, file list, maintainer scripts; install it
# into a throwaway root (dpkg --root, the maintainer scripts run chrootless with
# DPKG_ROOT), which must create the user and /var/lib/musubi-relay (0700) there and
# nothing on this machine; run the installed unit's ExecStart from that root (init,
# serve, /healthz, /metrics, SIGTERM); remove and purge it, which must keep the relay
# directory. Installs cargo-deb (`cargo install --locked cargo-deb`) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/deb-common.sh
source scripts/lib/deb-common.sh
deb_build "scripts/deb.sh" musubi-relay musubi-relay deb-check "$@"

work=$(mktemp -d)
relay_pid=
cleanup() {
  if [ -n "$relay_pid" ]; then kill "$relay_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Control fields.
dpkg-deb -f "$deb" > "$work/control"
check "package name" grep -qx 'Package: musubi-relay' "$work/control"
check "section" grep -qx 'Section: net' "$work/control"
check "depends on libc and passwd" grep -Eq '^Depends: .*libc6.*passwd|^Depends: .*passwd.*libc6' "$work/control"
check "description" grep -q '^Description: musubi office relay' "$work/control"

# File list.
dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's#^\./#/#' > "$work/files"
for f in \
  /usr/bin/musubi-relay \
  /usr/lib/systemd/system/musubi-relay.service \
  /usr/share/man/man1/musubi-relay.1.gz \
  /usr/share/man/man1/musubi-relay-backup.1.gz \
  /usr/share/man/man1/musubi-relay-restore.1.gz \
  /usr/share/man/man1/musubi-relay-serve.1.gz \
  /usr/share/man/man1/musubi-relay-init.1.gz \
  /usr/share/bash-completion/completions/musubi-relay \
  /usr/share/zsh/vendor-completions/_musubi-relay \
  /usr/share/fish/vendor_completions.d/musubi-relay.fish \
  /usr/share/doc/musubi-relay/relay.md \
  /usr/share/doc/musubi-relay/threat-model.md \
  /usr/share/doc/musubi-relay/examples/serve.toml.example \
  /usr/share/doc/musubi-relay/copyright; do
  check "file $f in the package" grep -qx "$f" "$work/files"
done
check "no hidden subcommand's man page" bash -c "! grep -q generate-assets '$work/files'"

# Maintainer scripts.
dpkg-deb -e "$deb" "$work/DEBIAN"
for s in postinst prerm postrm; do
  check "$s is executable" test -x "$work/DEBIAN/$s"
  check "$s parses" sh -n "$work/DEBIAN/$s"
done
check "postinst creates the system user" grep -q 'useradd .*--system' "$work/DEBIAN/postinst"
check "postrm never deletes the relay directory" bash -c "! grep -Eq 'rm -[a-z]*r' '$work/DEBIAN/postrm'"

# Install into a throwaway root: dpkg's database and the account files, nothing else.
root="$work/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers" \
  "$root/var/log" "$root/etc"
: > "$root/var/lib/dpkg/status"
: > "$root/var/lib/dpkg/available"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
printf 'root:*:19000:0:99999:7:::\n' > "$root/etc/shadow"
printf 'root:*::\n' > "$root/etc/gshadow"
chmod 0640 "$root/etc/shadow" "$root/etc/gshadow"
host_passwd=$(sha256sum /etc/passwd)
dpkg --root="$root" --force-script-chrootless --force-depends --log="$work/dpkg.log" \
  -i "$deb" > "$work/install.out" 2>&1 || { cat "$work/install.out" >&2; exit 1; }
check "installed" bash -c "dpkg --root='$root' -s musubi-relay | grep -q '^Status: install ok installed'"
check "user created in the root" grep -q '^musubi-relay:x:[0-9]*:[0-9]*:.*:/var/lib/musubi-relay:/usr/sbin/nologin$' "$root/etc/passwd"
check "group created in the root" grep -q '^musubi-relay:' "$root/etc/group"
check "this machine's accounts untouched" test "$(sha256sum /etc/passwd)" = "$host_passwd"
uid=$(awk -F: '$1 == "musubi-relay" { print $3 }' "$root/etc/passwd")
check "state directory 0700, owned by the user" \
  test "$(stat -c '%a %u' "$root/var/lib/musubi-relay")" = "700 $uid"
check "postinst tells what comes next" grep -q 'musubi-relay init' "$work/install.out"
check "man page renders with the exit codes" bash -c "zcat '$root/usr/share/man/man1/musubi-relay.1.gz' | grep -q 'Exit codes'"
check "bash completion loads" bash -c "source '$root/usr/share/bash-completion/completions/musubi-relay' && complete -p musubi-relay >/dev/null"
check "installed binary runs" bash -c "'$root/usr/bin/musubi-relay' --version > /dev/null"

# The installed unit.
unit="$root/usr/lib/systemd/system/musubi-relay.service"
check "unit is Type=notify" grep -qx 'Type=notify' "$unit"
check "unit has a watchdog" grep -qx 'WatchdogSec=30' "$unit"
check "unit reloads with SIGHUP" grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$unit"
check "unit runs /usr/bin/musubi-relay" grep -qx 'ExecStart=/usr/bin/musubi-relay serve --dir /var/lib/musubi-relay/relay' "$unit"
check "unit names no credential file that may not exist" bash -c "! grep -q '^LoadCredentialEncrypted=' '$unit'"
if command -v systemd-analyze >/dev/null 2>&1; then
  # Only the unit's own syntax: the binary path is checked inside the root.
  sed "s#/usr/bin/musubi-relay#$root/usr/bin/musubi-relay#" "$unit" > "$work/musubi-relay.service"
  check "systemd-analyze verify" bash -c "systemd-analyze verify '$work/musubi-relay.service' 2>&1 | { ! grep -Ei 'unknown|invalid|failed to parse'; }"
fi

# Where systemd is absent: the unit's ExecStart by hand, inside the root.
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
read -r -a argv <<< "$exec_start"
relay_dir="$root/var/lib/musubi-relay/relay"
MUSUBI_KDF_WORK_FACTOR=10 "$root${argv[0]}" init --dir "$relay_dir" --office 1370100016 >/dev/null 2>&1
check "init into the state directory" test -f "$relay_dir/relay.toml"
mkfifo "$work/ready"
"$root${argv[0]}" "${argv[1]}" "${argv[2]}" "$root${argv[3]}" \
  --listen 127.0.0.1:0 --metrics 127.0.0.1:0 > "$work/ready" 2> "$work/serve.log" &
relay_pid=$!
exec 3< "$work/ready"
read -r -t 30 listening <&3
read -r -t 30 metrics_line <&3
metrics=${metrics_line#metrics on }
check "serve says where it listens" test "${listening%% *}" = listening
check "/healthz answers ok" bash -c "curl -fsS 'http://$metrics/healthz' | grep -qx ok"
check "/metrics answers" bash -c "curl -fsS 'http://$metrics/metrics' | grep -q '^musubi_relay_store_up 1'"
kill -TERM "$relay_pid"
wait "$relay_pid" && stopped=0 || stopped=$?
relay_pid=
exec 3<&-
check "SIGTERM stops it cleanly" test "$stopped" = 0

# Remove and purge: the relay directory and the user stay.
dpkg --root="$root" --force-script-chrootless --log="$work/dpkg.log" -r musubi-relay > /dev/null 2>&1
check "binary removed" test ! -e "$root/usr/bin/musubi-relay"
dpkg --root="$root" --force-script-chrootless --log="$work/dpkg.log" -P musubi-relay > "$work/purge.out" 2>&1
check "purge keeps the relay directory" test -f "$relay_dir/relay.toml"
check "purge keeps the user" grep -q '^musubi-relay:' "$root/etc/passwd"

echo "deb: $passed passed, $failures failed"
[ "$failures" -eq 0 ]
