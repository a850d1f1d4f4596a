# Sourced by tools/setup.sh and tools/build_frozen.sh: a private apt configuration that reaches
# another Debian suite (trixie, for MicroPython) while the system's own sources stay untouched.
# private_apt DIR SOURCES_LINE_PREFIX [EXTRA_APT_OPTION...] fills the array APT_PRIVATE with the
# apt-get options; the line is completed with this machine's Debian mirror and MP_DEBIAN_SUITE.
private_apt() {
  local dir="$1" kind="$2"; shift 2
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  local uri
  uri="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
  [ -n "$uri" ] || uri="$(awk '/^deb / && !/security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
  [ -n "$uri" ] || uri="http://deb.debian.org/debian"
  echo "$kind [trusted=yes] $uri $MP_DEBIAN_SUITE main" > "$dir/sources.list"
  APT_PRIVATE=(-o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
               -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache" -o Debug::NoLocking=1 "$@")
  apt-get "${APT_PRIVATE[@]}" update -qq
}
