"""Import contracts, read from the source (no module is imported): predict/ stands on its own, and no module of
detective/ imports itself round a loop.

`predict.py` needs a checkpoint file and nothing of training: no Lightning, no Hydra, nothing of `detective.train`,
except `predict/distributed.py`, the `--out` path, which runs the predictor through Lightning. Imports inside
functions count too (they run when the function does); those under `if TYPE_CHECKING:` do not.
"""

from __future__ import annotations

import ast
from functools import cache
from importlib.util import resolve_name
from pathlib import Path

import detective

PACKAGE = Path(detective.__file__).parent
PREDICT = "detective.predict"
MAY_USE_LIGHTNING = {"detective.predict.distributed"}
FORBIDDEN_IN_PREDICT = ("detective.train", "lightning", "hydra")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node, less the bodies of `if TYPE_CHECKING:` (annotations only, never run)."""
    nodes, todo = [], [tree]
    while todo:
        node = todo.pop()
        nodes.append(node)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return nodes


@cache
def imports(module: str) -> frozenset[str]:
    """The modules `module` imports when it runs, by full name; `from package import module` names the module,
    and importing a module imports its packages."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    parents = {".".join(name.split(".")[:i]) for name in names for i in range(1, name.count(".") + 1)}
    return frozenset((names | {p for p in parents if p in MODULES}) - {module})


def reached(start: str, skip: set[str]) -> set[str]:
    """Every module `start` imports, directly or through detective's own modules (not descending into `skip`)."""
    seen, todo = set(), [start]
    while todo:
        for name in imports(todo.pop()):
            if name not in seen:
                seen.add(name)
                if name in MODULES and name not in skip:
                    todo.append(name)
    return seen


def is_within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_predict_reaches_neither_training_nor_lightning_nor_hydra():
    predict = sorted(m for m in MODULES if is_within(m, PREDICT))
    assert len(predict) > 10  # the modules were found
    broken = {}
    for module in sorted(set(predict) - MAY_USE_LIGHTNING):
        bad = {n for n in reached(module, skip=MAY_USE_LIGHTNING) if any(is_within(n, f) for f in FORBIDDEN_IN_PREDICT)}
        if bad:
            broken[module] = sorted(bad)
    assert broken == {}


def test_distributed_reaches_no_training_nor_hydra():
    for module in MAY_USE_LIGHTNING:
        bad = [n for n in reached(module, skip=set()) if is_within(n, "detective.train") or is_within(n, "hydra")]
        assert bad == [], module


def test_no_import_cycle_in_detective():
    assert sorted(m for m in MODULES if m in reached(m, skip=set())) == []
