"""The pure layers (domain/, dialects/, protocols/) import no I/O, no clock, no randomness.

Allowed: the standard library minus the modules below, ``ordercast.errors``, and
within the pure layers: domain ← dialects; protocols stand alone.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "ordercast"

FORBIDDEN_STDLIB = {
    "asyncio", "socket", "selectors", "ssl", "subprocess", "threading", "multiprocessing",
    "concurrent", "random", "secrets", "time", "os", "sqlite3", "http.client", "http.server",
    "urllib.request", "uuid",
    "shutil", "tempfile", "signal", "logging", "io", "pathlib", "glob",
}  # fmt: skip
ALLOWED_ORDERCAST = {
    "domain": ("ordercast.errors", "ordercast.domain"),
    "dialects": ("ordercast.errors", "ordercast.domain", "ordercast.dialects"),
    "protocols": ("ordercast.errors", "ordercast.protocols"),
}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


def _modules(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


FILES = [
    (layer, path) for layer in ALLOWED_ORDERCAST for path in sorted((SRC / layer).rglob("*.py"))
]


@pytest.mark.parametrize(("layer", "path"), FILES, ids=[str(p.relative_to(SRC)) for _, p in FILES])
def test_pure_layer_imports(layer: str, path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    problems = []
    for line, module in _modules(tree):
        top = module.split(".")[0]
        if top == "ordercast":
            if not module.startswith(ALLOWED_ORDERCAST[layer]):
                problems.append(f"{line}: imports {module}")
        elif top == "__future__":
            continue
        elif top not in sys.stdlib_module_names:
            problems.append(f"{line}: imports third-party {module}")
        elif any(module == f or module.startswith(f + ".") for f in FORBIDDEN_STDLIB):
            problems.append(f"{line}: imports I/O, clock or randomness module {module}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in CLOCK_CALLS
            and not node.args
            and not node.keywords
        ):
            problems.append(f"{node.lineno}: reads the clock ({node.func.attr}())")
    assert not problems, f"{path.relative_to(SRC)}:\n" + "\n".join(problems)


def test_the_rule_sees_the_layers() -> None:
    assert any(layer == "domain" for layer, _ in FILES)
    assert any(layer == "protocols" for layer, _ in FILES)
