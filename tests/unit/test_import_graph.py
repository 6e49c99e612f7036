"""The package boundaries: the contract imports neither side, and the sides not each other;
the client (the user's CLI, with Kubernetes credentials) may use the worker's pipeline, and no
package imports the client.

Read from the source with `ast`, so an import hidden inside a function counts too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "kube_transcode": ROOT / "kube_transcode",
    "kube_transcode_operator": ROOT / "operator" / "kube_transcode_operator",
    "kube_transcode_worker": ROOT / "worker" / "kube_transcode_worker",
    "kube_transcode_client": ROOT / "client" / "kube_transcode_client",
    "kube_transcode_devstack": ROOT / "devstack" / "kube_transcode_devstack",
}
# What each package may import of the project's own packages (itself always).
ALLOWED = {
    "kube_transcode": set(),
    "kube_transcode_operator": {"kube_transcode"},
    "kube_transcode_worker": {"kube_transcode"},
    "kube_transcode_client": {"kube_transcode", "kube_transcode_worker"},
}


def imported_packages(folder: Path) -> dict[str, set[str]]:
    """Project package -> the files of `folder` that import it, at any depth of the code."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES:
                    found.setdefault(top, set()).add(_shown(path))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_what_it_may(package: str) -> None:
    imports = imported_packages(PACKAGES[package])
    forbidden = {
        other: sorted(files)
        for other, files in imports.items()
        if other != package and other not in ALLOWED[package]
    }
    assert forbidden == {}, f"{package} imports {forbidden}"


@pytest.mark.parametrize("package", sorted(set(PACKAGES) - {"kube_transcode_client"}))
def test_no_package_imports_the_client(package: str) -> None:
    importers = imported_packages(PACKAGES[package]).get("kube_transcode_client", set())
    assert importers == set(), f"{package} imports the client: {sorted(importers)}"


def test_the_worker_needs_no_kubernetes_client() -> None:
    """Workers hold no Kubernetes credentials: the Kubernetes client stays in the client."""
    found = {
        str(path.relative_to(ROOT))
        for path in PACKAGES["kube_transcode_worker"].rglob("*.py")
        if re.search(r"^\s*(from|import) kubernetes\b", path.read_text(), re.MULTILINE)
    }
    assert found == set()


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    (tmp_path / "lazy.py").write_text(
        "def f():\n    from kube_transcode_worker.errors import JobError\n    return JobError\n"
    )
    assert imported_packages(tmp_path) == {"kube_transcode_worker": {str(tmp_path / "lazy.py")}}


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
