"""The layers of ../shared/DESIGN.md hold in the code: no package imports one below it
in the table, no module imports another package's private names, and CLI command modules
share helpers only through `cli.common` / `cli.options` (never each other)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "sapphire"

#: what each package may import (DESIGN.md's layers table; top-level helper modules such
#: as `sapphire.encoding`, `sapphire.config` and `sapphire.gc_tuning` import nothing of ours)
ALLOWED = {
    "domain": set(),
    "data": {"domain"},
    "indicators": set(),
    "strategy": {"domain", "data", "indicators"},
    "risk": {"domain"},
    "portfolio": {"domain"},
    # the simulated venues keep their own ledger with the portfolio's `Account` (one
    # accounting, not a second copy inside sim); they never touch a node's portfolio
    "sim": {"domain", "portfolio"},
    "store": {"domain"},
    "report": set(),
    "engine": {"domain", "data", "strategy", "risk", "portfolio", "store"},
    # the local exchange replays recorded bars (the sample, the catalog) through `data`
    "venues": {"domain", "data", "engine", "sim"},
    "compliance": {"domain", "store"},
    # operations: anything below the API (the nodes' events, their run directories)
    "ops": {
        "domain",
        "data",
        "indicators",
        "strategy",
        "risk",
        "portfolio",
        "sim",
        "store",
        "report",
        "engine",
        "venues",
        "backtest",
        "paper",
        "ml",
        "optimize",
        "compliance",
    },
}
HELPERS = {"encoding", "config", "gc_tuning", "correlation", "__init__"}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """The imports of a module, but those made only for type checkers."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_above_it(package: str) -> None:
    bad = []
    for path in sorted((SRC / package).rglob("*.py")):
        for module, _names in _imports(path):
            parts = module.split(".")
            if parts[0] != "sapphire" or len(parts) < 2:
                continue
            target = parts[1]
            if target in (package, *HELPERS) or target in ALLOWED[package]:
                continue
            bad.append(f"{path.relative_to(SRC)} imports {module}")
    assert not bad, "\n".join(bad)


def test_no_module_imports_another_packages_private_names() -> None:
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        own = path.relative_to(SRC).parts[0]
        for module, names in _imports(path):
            parts = module.split(".")
            if parts[0] != "sapphire" or len(parts) < 2 or parts[1] == own:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                bad.append(f"{path.relative_to(SRC)}: {module} {private}")
    assert not bad, "\n".join(bad)


def test_cli_command_modules_do_not_import_each_other() -> None:
    shared = {"sapphire.cli.common", "sapphire.cli.options"}
    bad = []
    for path in sorted((SRC / "cli").glob("*.py")):
        if path.stem in ("main", "__init__"):
            continue
        for module, _names in _imports(path):
            if module.startswith("sapphire.cli.") and module not in shared:
                bad.append(f"cli/{path.name} imports {module}")
    assert not bad, "\n".join(bad)
