#!/usr/bin/env bash
# usage: tools/fetch_armhf_dcmtk.sh  -> prints the sysroot of Debian bookworm's armhf dcmtk
# The send benchmark compares the armhf firmware image with dcmtk storescu *on the same CPU*: both
# under the same qemu-arm. This unpacks bookworm's armhf dcmtk (the version the host runs natively)
# with its library closure, as resolved by apt against an empty package state, into
# .toolchain/sysroot-armhf-dcmtk (through a private apt configuration: system sources untouched).
# Run it: qemu-arm -L SYSROOT SYSROOT/usr/bin/storescu, with DCMDICTPATH pointing at its dicom.dic
# (in bookworm the dictionary ships in libdcmtk17; trixie moved it to dcmtk-data).
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/versions.env
. tools/private_apt.sh
TOOLCHAIN="${MODGATE_TOOLCHAIN:-$PWD/.toolchain}"
sysroot="$TOOLCHAIN/sysroot-armhf-dcmtk"
version="$(dpkg-query -W -f='${Version}' dcmtk 2>/dev/null || echo unknown)"
if [ -x "$sysroot/usr/bin/storescu" ] && [ "$(cat "$sysroot.stamp" 2>/dev/null)" = "$version" ]; then
  echo "$sysroot"
  exit 0
fi
apt_dir="$TOOLCHAIN/apt-dcmtk"
mkdir -p "$apt_dir/debs"
: > "$apt_dir/status"
MP_DEBIAN_SUITE=bookworm private_apt "$apt_dir" deb -o APT::Architectures=armhf -o APT::Architecture=armhf \
  -o Dir::State::status="$apt_dir/status"
closure="$(apt-get "${APT_PRIVATE[@]}" install -s --no-install-recommends "dcmtk:armhf=$version" \
  | awk '/^Inst / {print $2}')"
(cd "$apt_dir/debs" && rm -f ./*.deb && apt-get "${APT_PRIVATE[@]}" download $closure base-files >/dev/null)
rm -rf "$sysroot" && mkdir -p "$sysroot"
for deb in "$apt_dir/debs"/*.deb; do dpkg -x "$deb" "$sysroot"; done
echo "$version" > "$sysroot.stamp"
echo "$sysroot"
