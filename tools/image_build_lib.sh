# Sourced by the firmware image builds (tools/build_frozen.sh, tools/build_baremetal.sh) with
# $board set, from the folder that holds tools/, firmware/ and boards/: sets TOOLCHAIN
# (MODGATE_TOOLCHAIN, else ./.toolchain) and src, Debian's MicroPython source of MP_DEBIAN_VERSION,
# fetched there once through a private apt configuration; defines board_field, board_data and
# with_mbedtls.
. tools/versions.env
. tools/private_apt.sh
TOOLCHAIN="${MODGATE_TOOLCHAIN:-$PWD/.toolchain}"
src="$TOOLCHAIN/micropython-src-$MP_DEBIAN_VERSION"
if [ ! -f "$src/py/mpconfig.h" ]; then
  echo "build: fetching the MicroPython $MP_DEBIAN_VERSION source from Debian $MP_DEBIAN_SUITE into $TOOLCHAIN" >&2
  apt_dir="$TOOLCHAIN/apt-src"
  mkdir -p "$apt_dir/download"
  private_apt "$apt_dir" deb-src
  (cd "$apt_dir/download" && rm -f ./* &&
     apt-get "${APT_PRIVATE[@]}" source --download-only "micropython=$MP_DEBIAN_VERSION+ds-1" >/dev/null 2>&1)
  rm -rf "$src.tmp" && mkdir -p "$src.tmp"
  tar -xf "$apt_dir"/download/micropython_*.orig.tar.* -C "$src.tmp" --strip-components=1
  # Debian strips the submodules; the build only checks that micropython-lib is there, and our
  # manifests need nothing from it.
  touch "$src.tmp/lib/micropython-lib/README.md"
  rm -rf "$src" && mv "$src.tmp" "$src"
fi

# board_field KEY: the board's board.json value (empty when null or absent).
board_field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2]) or '')" \
  "boards/$board/board.json" "$1"; }

# board_data OUT: OUT/board_data.py, the board's data as a module to freeze with its code (an image
# has no board folder to read board.json from).
board_data() { python3 -c "import json,sys; print('DATA = ' + repr(json.load(open(sys.argv[1]))))" \
  "boards/$board/board.json" > "$1/board_data.py"; }

# with_mbedtls: put mbedTLS's source where MicroPython's build expects its submodule (lib/mbedtls),
# fetched once from Debian's source package of MBEDTLS_SERIES (the series MicroPython pins).
with_mbedtls() {
  local tls="$TOOLCHAIN/mbedtls-src-$MBEDTLS_SERIES"
  if [ ! -f "$tls/include/mbedtls/ssl.h" ]; then
    echo "build: fetching the mbedTLS $MBEDTLS_SERIES source from Debian $MP_DEBIAN_SUITE into $TOOLCHAIN" >&2
    local apt_dir="$TOOLCHAIN/apt-src"
    mkdir -p "$apt_dir/download-mbedtls"
    private_apt "$apt_dir" deb-src
    (cd "$apt_dir/download-mbedtls" && rm -f ./* &&
       apt-get "${APT_PRIVATE[@]}" source --download-only mbedtls >/dev/null 2>&1)
    local orig
    orig="$(ls "$apt_dir"/download-mbedtls/mbedtls_"$MBEDTLS_SERIES".*.orig.tar.* 2>/dev/null | head -1)"
    [ -n "$orig" ] || { echo "build: Debian $MP_DEBIAN_SUITE has no mbedtls $MBEDTLS_SERIES.x source" >&2; exit 1; }
    rm -rf "$tls.tmp" && mkdir -p "$tls.tmp"
    tar -xf "$orig" -C "$tls.tmp" --strip-components=1
    rm -rf "$tls" && mv "$tls.tmp" "$tls"
  fi
  if [ ! -f "$src/lib/mbedtls/include/mbedtls/ssl.h" ]; then
    rm -rf "$src/lib/mbedtls" && ln -s "$tls" "$src/lib/mbedtls"
  fi
}
