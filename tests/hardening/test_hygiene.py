"""What the packages import is declared; what they say points inside the repository."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("relaybench", "mock_upstream", "relay", "loadtests", "reports")


def _sources() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def _imported_top_levels(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _declared() -> set[str]:
    """Distributions the package depends on: its requirements plus what their extras bring."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = set()
    for text in project["dependencies"]:
        req = Requirement(text)
        out.add(canonicalize_name(req.name))
        for extra in req.extras:  # e.g. uvicorn[standard] -> uvloop, httptools
            for sub in metadata.requires(req.name) or []:
                sub_req = Requirement(sub)
                if sub_req.marker and sub_req.marker.evaluate({"extra": extra}):
                    out.add(canonicalize_name(sub_req.name))
    return out


def test_every_third_party_import_is_a_declared_dependency() -> None:
    providers = metadata.packages_distributions()
    declared = _declared()
    missing = {}
    for path in _sources():
        for name in _imported_top_levels(path):
            if name in sys.stdlib_module_names or name in PACKAGES or name == "__future__":
                continue
            dists = {canonicalize_name(d) for d in providers.get(name, [name])}
            if not dists & declared:
                missing.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"


def test_no_source_or_doc_points_outside_the_repository() -> None:
    outside = re.compile(r"CONTRACT\.md|\.\./shared/|/work/(?:shared|team)/")
    files = [*_sources(), *sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
    hits = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in files
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if outside.search(line)
    ]
    assert hits == []
