"""The layers stay apart: the runtime core imports no service and no tooling, and services
never import each other (they talk through Kafka topics only)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(package: Path) -> dict[Path, set[str]]:
    found: dict[Path, set[str]] = {}
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        found[path] = names
    return found


def test_the_core_imports_no_service_and_no_tooling() -> None:
    for path, names in imported_modules(ROOT / "alive").items():
        wrong = {n for n in names if n.split(".")[0] in ("services", "alive_tools", "tests")}
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


@pytest.mark.parametrize(
    "service", sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())
)
def test_a_service_imports_no_other_service_and_no_tooling(service: str) -> None:
    for path, names in imported_modules(ROOT / "services" / service).items():
        others = {
            n
            for n in names
            if n == "alive_tools"
            or n.startswith("alive_tools.")
            or (n.startswith("services.") and n.split(".")[1] != service)
        }
        assert not others, f"{path.relative_to(ROOT)} imports {sorted(others)}"
