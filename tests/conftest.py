"""pytest set-up shared by every test folder: firmware and unit-test helpers on the import path."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT / "firmware", ROOT / "tests" / "unit", ROOT / "boards" / "unix"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))
