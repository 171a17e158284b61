"""Data flows one way: no module of the package imports from a layer above its own."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rag"

#: Lowest first. A unit is a top-level module or subpackage of rag ("rag" is its __init__).
LAYERS: list[set[str]] = [
    {"errors", "dates", "console", "redact", "followup"},
    {"settings", "news"},
    {"ingest", "names"},
    {"chunk"},
    {"titles", "stories"},
    {"embed"},
    {"store"},
    {"pipeline", "retrieve"},
    {"pipeline_ray"},  # drives rag.pipeline's Ingest on Ray
    {"index"},
    {"evidence", "feeds"},
    {"generate"},
    {"cite"},
    {"answer"},
    {"rag"},
    {"conversations"},
    {"evaluate", "sample", "ui"},
    {"cli"},
]
LEVEL = {unit: n for n, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "rag"


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "rag" or node.module.startswith("rag."):
                out.add(_unit(node.module))
        elif isinstance(node, ast.Import):
            out.update(_unit(a.name) for a in node.names if a.name == "rag" or a.name.startswith("rag."))
    return out


def test_every_unit_has_a_layer() -> None:
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert units <= set(LEVEL), f"add to LAYERS: {sorted(units - set(LEVEL))}"


def test_no_module_imports_from_a_layer_above() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts[:-1] if relative.name == "__init__" else relative.parts)
        own = _unit(module)
        for target in _imports(path) - {own}:
            if LEVEL[target] >= LEVEL[own]:
                upward.append(f"{path.relative_to(PACKAGE.parent)} imports rag.{target}")
    assert upward == []


def test_no_posix_only_module_is_imported_unconditionally() -> None:
    """`import rag` must work on Windows: fcntl and friends only inside a platform check."""
    posix_only = {"fcntl", "termios", "pwd", "grp", "resource"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module level, outside any if
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.relative_to(PACKAGE.parent)}: {n}" for n in names if n.split(".")[0] in posix_only]
    assert found == []


def test_readme_configuration_table_matches_the_settings() -> None:
    import re

    from rag.settings import Settings, env_vars
    from rag.ui.base import UISettings

    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`((?:RAG|OPENAI)_[A-Z_]+)`", table))
    declared = set(env_vars(Settings)) | set(env_vars(UISettings))
    assert declared - documented == set(), "declared but not in the README table"
    assert documented - declared == set(), "in the README table but read nowhere"
