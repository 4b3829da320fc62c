"""Package boundaries: the four packages import only ``relaybench``, the core imports none of them.

Every module's AST is walked, so imports inside functions count as much as module-level ones.
Orchestration (``relaybench/cli.py``, ``relaybench/run/``) and the feature folders may import the
packages (lazily); nothing else may.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mock_upstream", "relay", "loadtests", "reports")
# Parts of relaybench allowed to drive the packages; the rest is the shared core.
ORCHESTRATION = ("cli.py", "run", "faults", "search", "scrape", "traffic")


def imported(path: Path) -> set[str]:
    """Top-level names of the absolute imports anywhere in ``path`` (relative ones stay inside)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def core_modules() -> list[Path]:
    base = ROOT / "relaybench"
    return [p for p in modules(base) if p.relative_to(base).parts[0] not in ORCHESTRATION]


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_no_other_package(package: str) -> None:
    others = set(PACKAGES) - {package}
    found = {
        str(path.relative_to(ROOT)): sorted(imported(path) & others)
        for path in modules(ROOT / package)
    }
    assert modules(ROOT / package), f"{package}/ has no modules: the test would check nothing"
    assert {k: v for k, v in found.items() if v} == {}


def test_the_core_imports_none_of_the_packages() -> None:
    core = core_modules()
    assert ROOT / "relaybench" / "sse.py" in core and ROOT / "relaybench" / "cli.py" not in core
    found = {str(p.relative_to(ROOT)): sorted(imported(p) & set(PACKAGES)) for p in core}
    assert {k: v for k, v in found.items() if v} == {}


def test_the_walk_sees_function_level_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import relay.keys\n"
        "def f():\n    from reports import summary\n"
        "def g():\n    import loadtests.user as u\n"
        "from . import sibling\n"
    )
    assert imported(source) == {"relay", "reports", "loadtests"}
