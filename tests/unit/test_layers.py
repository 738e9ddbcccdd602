"""The layers of design.md: operations and the store below them never import the agent or the lab; the agent
and backup/ never import the lab (the lab deploys the product the way a user would); the topology imports
nothing above it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOWER = [*sorted((ROOT / "federation" / "operations").glob("*.py")),
         *sorted((ROOT / "federation" / "dcs").glob("*.py")),
         *[ROOT / "federation" / f"{name}.py" for name in ("store", "store_config", "store_lease", "store_quorum",
                                                          "store_status", "record_store", "state", "lease_policy",
                                                          "gate", "gate_core", "gate_store", "topology",
                                                          "field_rules")]]


def imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", LOWER, ids=lambda p: str(p.relative_to(ROOT)))
def test_lower_layers_import_neither_the_agent_nor_the_lab(path: Path) -> None:
    bad = sorted(m for m in imported(path) if m == "agent" or m.startswith("agent.") or is_lab(m))
    assert bad == [], f"{path.relative_to(ROOT)} imports {bad}"


def is_lab(module: str) -> bool:
    return module == "federation.lab" or module.startswith("federation.lab.")


@pytest.mark.parametrize("path", [*sorted((ROOT / "agent").glob("*.py")), *sorted((ROOT / "backup").glob("*.py"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_the_agent_and_backup_never_import_the_lab(path: Path) -> None:
    bad = sorted(m for m in imported(path) if is_lab(m))
    assert bad == [], f"{path.relative_to(ROOT)} imports {bad}"


def test_no_production_module_loads_the_lab_even_through_another() -> None:
    """Transitively, in a fresh interpreter: every module of backup/, agent/ and federation/operations."""
    modules = [f"{p.parent.relative_to(ROOT).as_posix().replace('/', '.')}.{p.stem}"
               for d in ("backup", "agent", "federation/operations") for p in sorted((ROOT / d).glob("*.py"))
               if p.stem != "__main__"]
    code = (f"import importlib, sys\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m == 'federation.lab' or m.startswith('federation.lab.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_the_topology_loads_nothing_of_backup_or_the_agent() -> None:
    """Transitively, in a fresh interpreter: a function-local import would hide a cycle from the AST check."""
    code = ("import sys, federation.topology, federation.job_spec\n"
            "from federation.topology import load_topology\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('backup', 'agent')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout
