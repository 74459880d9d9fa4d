#!/usr/bin/env bash
# Installs what musubi needs on a fresh Debian machine (idempotent; quiet when all is there).
# System packages: a C toolchain, make and perl, pkg-config, and the distribution's OpenSSL
# headers (SQLCipher builds from source and links Debian's libcrypto, which gets the
# distribution's security updates and saves compiling OpenSSL), PostgreSQL (the relay cluster tests). Rust tools: cargo-nextest (test runner) when missing.
#
# `scripts/setup.sh demo` installs only what scripts/demo.sh needs (the build, pcscd and
# vpcd): a newcomer's first command does not wait for PostgreSQL, poppler or a test runner.
# `scripts/setup.sh gui` adds what scripts/screenshots.sh needs to every test need.
set -euo pipefail
mode="${1:-test}"

need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
have cc || need_pkgs+=(build-essential)
have make || need_pkgs+=(make)
have perl || need_pkgs+=(perl)
have pkg-config || need_pkgs+=(pkg-config)
[ -e /usr/include/openssl/evp.h ] || need_pkgs+=(libssl-dev)
if [ "$mode" != demo ]; then
  have pkill || need_pkgs+=(procps)   # the kill -9 crash tests
  have dpkg-shlibdeps || need_pkgs+=(dpkg-dev)   # scripts/deb.sh: cargo-deb's library dependencies
  have curl || need_pkgs+=(curl)   # scripts/deb.sh: /healthz of the installed relay
  have desktop-file-validate || need_pkgs+=(desktop-file-utils)   # scripts/deb.sh: the app's desktop entry
fi
# `scripts/setup.sh gui`: what scripts/screenshots.sh needs to run the real app window
# (building and the egui_kittest tests need none of it: winit and glutin load X11 and GL
# at run time).
if [ "$mode" = gui ]; then
  have Xvfb || need_pkgs+=(xvfb)
  have xwd || need_pkgs+=(x11-apps)
  have xwininfo || need_pkgs+=(x11-utils)
  # ImageMagick itself: a `convert` of another origin on PATH may handle PNG only.
  [ -x /usr/bin/convert ] || need_pkgs+=(imagemagick)
  have python3 || need_pkgs+=(python3)
  # Mesa software rendering (llvmpipe) for GLX under Xvfb, and the X keyboard library.
  for lib in libGL.so.1 libEGL.so.1 libxkbcommon-x11.so.0; do
    ldconfig -p 2>/dev/null | grep -q "$lib" || {
      need_pkgs+=(libgl1-mesa-dri libglx-mesa0 libegl1 libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6)
      break
    }
  done
  [ -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so ] || [ -n "$(ls /usr/lib/*/dri/swrast_dri.so 2>/dev/null)" ] || need_pkgs+=(libgl1-mesa-dri)
fi
# The app's screen-reader support (eframe's accesskit → winit) links libwayland-client;
# the demo builds musubi without its window and needs none of it.
[ "$mode" = demo ] || [ -e /usr/include/wayland-client.h ] || need_pkgs+=(libwayland-dev)
[ "$mode" = demo ] || have pdftoppm || need_pkgs+=(poppler-utils)   # export tests (pdftotext, pdfinfo, pdffonts), docs/pdf renders
# My Number card: pcsc-lite (pcsc crate), pcscd, and vsmartcard's vpcd virtual reader for
# the virtual card tests and the demo.
[ -e /usr/include/PCSC/winscard.h ] || need_pkgs+=(libpcsclite-dev)
have pcscd || need_pkgs+=(pcscd)
[ -e /etc/reader.conf.d/vpcd ] || need_pkgs+=(vsmartcard-vpcd)
# PostgreSQL server binaries: the relay-cluster tests start a throwaway cluster of their
# own (musubi-pgtest), never a system service.
[ "$mode" = demo ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)

if [ "${#need_pkgs[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${need_pkgs[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# pcscd must run for the card tests and the demo (its vpcd reader listens on 35963). On a
# machine without systemd, start it in the background; it outlives this script.
if ! pgrep -x pcscd >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: starting pcscd" >&2
  # Close inherited descriptors 3-9 first: a caller's lock (e.g. `flock LOCK scripts/…`)
  # must not live on in the daemon and stay held after the caller ends.
  $SUDO sh -c 'exec 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-; nohup pcscd --foreground >/dev/null 2>&1 &'
  for _ in $(seq 1 50); do
    (exec 3<>/dev/tcp/127.0.0.1/35963) 2>/dev/null && break
    sleep 0.1
  done
fi

if ! have cargo; then
  echo "setup: cargo (Rust) is required; install it with your distribution or rustup" >&2
  exit 1
fi

if [ "$mode" != demo ] && ! have cargo-nextest && [ "${MUSUBI_SKIP_NEXTEST_INSTALL:-}" != 1 ]; then
  echo "setup: installing cargo-nextest" >&2
  cargo install --locked cargo-nextest >/dev/null 2>&1 || echo "setup: cargo-nextest unavailable; tests will use cargo test" >&2
fi
