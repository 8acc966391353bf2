"""The package's layering (docs/architecture.md): imports run downward, private names stay in their file.

Every import in ``src/emergence`` is read with :mod:`ast`, including those inside functions (a lazy import still
ties the two files together). Each module belongs to one layer of ``LAYERS`` (lowest first); an import from a module
to one in a higher layer is an upward import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "emergence"

# lowest first; a module's layer is the longest prefix of its dotted name listed here
LAYERS: list[tuple[str, ...]] = [
    ("_version", "errors", "files", "images", "progress", "runtime", "wordlevel", "processing", "batching"),
    ("specs", "layouts"),
    ("adapters",),
    ("capture",),
    # a run and a report draw themselves (figures, the HTML viewer): the modules they need read only data and sit low
    ("run", "plotting.base", "plotting.reports", "plotting.viewer", "analysis.grouping"),
    ("analysis",),
    ("maps",),
    ("probe", "causal"),
    ("plotting",),
    ("organism",),
    ("testing",),
    ("loading",),
    ("datasets",),
    ("sweep",),
    ("studies",),
    ("cli", "__init__", "__main__"),
]

# the one upward import allowed, and why (docs/architecture.md says the same)
ALLOWED_UPWARD = {
    # emergence.layouts keeps serving register_layout / build_layout / ..., which moved to adapters.registry, under
    # their old import path (loaded on first use, so the layout types never load the adapters)
    ("layouts", "adapters"),
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> int:
    best = None
    for rank, names in enumerate(LAYERS):
        for name in names:
            if module == name or module.startswith(name + "."):
                if best is None or len(name) > best[1]:
                    best = (rank, len(name))
    if best is None:
        raise AssertionError(f"module emergence.{module} belongs to no layer of tests/test_architecture.LAYERS")
    return best[0]


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """``(imported module, imported names, line)`` of every emergence import in ``path`` (relative ones resolved)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and (node.module == "emergence" or node.module.startswith("emergence.")):
                target = node.module.removeprefix("emergence").lstrip(".")
            else:
                continue
            names = [a.name for a in node.names]
            if not target:  # from . import x / from emergence import x: x may be a submodule
                for name in names:
                    out.append((name if (SRC / name).exists() or (SRC / f"{name}.py").exists() else "__init__",
                                [name], node.lineno))
                continue
            sub = [n for n in names if (SRC / Path(*target.split(".")) / f"{n}.py").exists()
                   or (SRC / Path(*target.split(".")) / n).is_dir()]
            for name in sub:
                out.append((f"{target}.{name}", [], node.lineno))
            out.append((target, [n for n in names if n not in sub], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("emergence."):
                    out.append((alias.name.removeprefix("emergence."), [], node.lineno))
    return out


def _all_imports() -> list[tuple[str, str, list[str], int]]:
    rows = []
    for path in sorted(SRC.rglob("*.py")):
        source = _module_name(path)
        for target, names, line in _imports(path):
            rows.append((source, target, names, line))
    return rows


def test_every_module_has_a_layer() -> None:
    for path in SRC.rglob("*.py"):
        _layer(_module_name(path))


def test_imports_run_downward() -> None:
    upward = []
    for source, target, _names, line in _all_imports():
        if source.split(".")[0] == target.split(".")[0]:
            continue  # inside one package / module
        if _layer(target) > _layer(source):
            pair = (source.split(".")[0], target.split(".")[0])
            if pair not in ALLOWED_UPWARD:
                upward.append(f"emergence.{source}:{line} imports emergence.{target} (a higher layer)")
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_the_allowed_upward_import_exists() -> None:
    """The exception list names real imports only (a stale entry would hide a future fault)."""
    seen = {(s.split(".")[0], t.split(".")[0]) for s, t, _n, _l in _all_imports() if _layer(t) > _layer(s)}
    assert ALLOWED_UPWARD <= seen


def test_no_private_name_is_imported_across_files() -> None:
    crossing = []
    for source, target, names, line in _all_imports():
        if target == source:
            continue
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if private and target != "_version":
            crossing.append(f"emergence.{source}:{line} imports {private} from emergence.{target}")
        if target.rpartition(".")[2].startswith("_") and target.rpartition(".")[2] not in ("_version",) \
                and not target.rpartition(".")[2].startswith("__"):
            crossing.append(f"emergence.{source}:{line} imports the private module emergence.{target}")
    assert not crossing, "private names used across files:\n" + "\n".join(crossing)


@pytest.mark.parametrize("facade", ["maps", "causal", "plotting", "analysis", "sweep", "testing"])
def test_public_modules_stay_importable(facade: str) -> None:
    import importlib

    module = importlib.import_module(f"emergence.{facade}")
    for name in getattr(module, "__all__", []):
        assert hasattr(module, name), f"emergence.{facade}.{name} is in __all__ but missing"
