#!/usr/bin/env bash
# usage: tools/vendor_unittest.sh MICROPYTHON_LIB COMMIT
# Refresh tests/mpunit/ from a git clone of micropython-lib at COMMIT: its `unittest` package,
# which the firmware unit tests import under MicroPython (tools/mptest.py puts tests/mpunit on
# MICROPYPATH; CPython and pytest use the standard library's), and the licence it comes under.
# The copy is never edited by hand: tests/mp_run.py adds the few asserts it lacks.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 MICROPYTHON_LIB COMMIT" >&2; exit 2; }
repo="$1"; commit="$2"
cd "$(dirname "$0")/.."
full="$(git -C "$repo" rev-parse --verify "$commit^{commit}")"
dest=tests/mpunit
mkdir -p "$dest/unittest"
git -C "$repo" show "$full:python-stdlib/unittest/unittest/__init__.py" > "$dest/unittest/__init__.py"
git -C "$repo" show "$full:LICENSE" > "$dest/LICENSE"
version="$(git -C "$repo" show "$full:python-stdlib/unittest/manifest.py" | sed -n 's/.*version="\([^"]*\)".*/\1/p')"
cat > "$dest/VENDORED" <<END
micropython-lib unittest $version (python-stdlib/unittest/unittest/__init__.py), MIT licence (LICENSE)
commit $full
Refreshed by tools/vendor_unittest.sh; not edited by hand.
END
echo "tests/mpunit: unittest $version from micropython-lib $full"
