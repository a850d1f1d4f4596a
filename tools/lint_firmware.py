"""Reject Python features that MicroPython lacks, in code that must run on the device.

ruff checks style; this checks portability, which ruff cannot express: MicroPython has no
struct.Struct, no dataclasses or typing modules, no f-string `!r` conversions or nested format
specs, no `b[::-1]` on bytes, and no `await` inside a comprehension.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

FORBIDDEN_MODULES = {"dataclasses", "typing", "enum", "abc", "pathlib", "os.path", "functools", "itertools"}


def problems_in(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []

    def report(node: ast.AST, message: str) -> None:
        found.append(f"{path}:{getattr(node, 'lineno', 0)}: {message}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in FORBIDDEN_MODULES:
                    report(node, f"import {alias.name}: not available on MicroPython")
        elif isinstance(node, ast.ImportFrom):
            if node.module in FORBIDDEN_MODULES:
                report(node, f"from {node.module} import: not available on MicroPython")
        elif isinstance(node, ast.Attribute) and node.attr == "Struct":
            report(node, "struct.Struct: MicroPython has none; use pack_into/unpack_from")
        elif isinstance(node, ast.FormattedValue):
            if node.conversion != -1:
                report(node, "f-string conversion (!r/!s/!a): MicroPython lacks it")
            if node.format_spec is not None and any(
                isinstance(v, ast.FormattedValue) for v in ast.walk(node.format_spec)
            ):
                report(node, "nested f-string format spec: MicroPython lacks it")
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            if any(isinstance(inner, ast.Await) for inner in ast.walk(node)):
                report(node, "await inside a comprehension: a SyntaxError on MicroPython")
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
            step = node.slice.step
            if isinstance(step, ast.UnaryOp) and isinstance(step.op, ast.USub):
                report(node, "negative slice step: MicroPython raises NotImplementedError on bytes")
    return found


def main(argv: list[str]) -> int:
    roots = [Path(a) for a in argv] or [Path("firmware"), Path("boards"), Path("tests/unit")]
    problems = []
    for root in roots:
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for path in files:
            problems += problems_in(path)
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
