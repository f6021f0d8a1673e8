"""The data flow, checked on the source: no import cycles among fope modules (``TYPE_CHECKING`` imports included),
no import against the data flow (``LAYERS``: docs/architecture.md), and evaluation never reaches training."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def fope_imports(type_checking: bool = True) -> dict[str, set[str]]:
    """Module -> the fope modules it imports (anywhere in the file, lazy imports included; ``TYPE_CHECKING`` imports
    too unless ``type_checking`` is False: an annotation that names a module above is an import against the flow)."""
    modules = {module_name(path): path for path in (SRC / "fope").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        type_only = {
            id(node)
            for block in ast.walk(tree)
            if not type_checking and isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for stmt in block.body
            for node in ast.walk(stmt)
        }
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up ``level - 1`` packages
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets.update(
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
                )
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a list of modules, first == last), or None. A package's ``__init__`` importing its own
    submodules is not an edge back: ``fope.data`` -> ``fope.data.store`` is how packages are built."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if node.startswith(target + "."):  # a submodule importing its parent package's __init__
                continue
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle(fope_imports())
    assert cycle is None, " -> ".join(cycle)


#: The data flow, bottom to top (docs/architecture.md): text -> tokens -> batches -> model -> checkpoint -> evaluators
#: -> results -> report, with the config beside it and campaigns and the CLI on top. A module imports only modules of
#: its own layer or below (the longest matching prefix names a module's layer; a package's ``__init__`` re-exporting
#: its submodules is not an edge).
LAYERS = (
    (
        "foundation",
        (
            "fope.errors",
            "fope.extras",
            "fope.files",
            "fope.checks",
            "fope.progress",
            "fope.device",
            "fope.sharded",
            "fope.metrics",
            "fope.provenance",
        ),
    ),
    ("positions", ("fope.kernels", "fope.positions")),
    (
        "model",
        (
            "fope.generation",
            "fope.model",
            "fope.integrations.modeling_fope",
            "fope.integrations.transformers",
            "fope.integrations.rope_check",
        ),
    ),
    ("data", ("fope.data",)),
    ("config", ("fope.config", "fope.presets", "fope.integrations.hf_lm")),
    ("checkpoint", ("fope.checkpoint",)),
    ("build", ("fope.build", "fope.runs", "fope.integrations")),
    ("train and evaluate", ("fope.fsdp", "fope.train", "fope.evaluate", "fope.benchmark")),
    ("report", ("fope.report", "fope.analysis")),
    ("engines", ("fope.executor", "fope.worker")),
    ("experiments", ("fope.experiments",)),
    ("cli", ("fope.cli", "fope.__main__", "fope")),
)


def layer(module: str) -> int:
    """The index in ``LAYERS`` of ``module``'s layer."""
    matches = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer of LAYERS: add it (and to docs/architecture.md)"
    return max(matches)[1]


def test_no_import_against_the_data_flow():
    against = [
        f"{name} ({LAYERS[layer(name)][0]}) imports {target} ({LAYERS[layer(target)][0]})"
        for name, targets in sorted(fope_imports().items())
        for target in sorted(targets)
        if not name.startswith(target + ".") and layer(target) > layer(name)
    ]
    assert not against, "\n".join(against)


def test_an_import_against_the_flow_is_found():
    assert layer("fope.evaluate.passkey") > layer("fope.model") > layer("fope.positions.fourier")
    assert layer("fope.integrations.hf_lm") < layer("fope.integrations.export")  # longest prefix wins
    assert layer("fope.experiments.demo") > layer("fope.train")
    assert layer("fope.experiments.campaign") > layer("fope.executor") > layer("fope.report")


def test_evaluation_and_reports_never_import_training():
    forbidden = ("fope.train", "fope.experiments", "fope.campaign")
    for name, targets in fope_imports().items():
        if name.startswith(("fope.evaluate", "fope.report")):
            bad = sorted(t for t in targets if t.startswith(forbidden))
            assert not bad, f"{name} imports {bad}"


#: Modules that exist to serve an optional extra (importing them needs it): everything else is a core path.
EXTRA_MODULES = {
    "fope.integrations.export": "transformers",
    "fope.integrations.hf_lm": "transformers",
    "fope.integrations.modeling_fope": "transformers",
    "fope.integrations.rope_check": "transformers",
    "fope.integrations.torchtitan": "torchtitan",
    "fope.integrations.transformers": "transformers",
}

BLOCKED_IMPORTS = """
import importlib, importlib.abc, json, pkgutil, sys
from fope.extras import EXTRAS
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in EXTRAS:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
sys.meta_path.insert(0, Blocked())
import fope
failed = {}
for module in pkgutil.walk_packages(fope.__path__, "fope."):
    if module.name == "fope.__main__":
        continue
    try:
        importlib.import_module(module.name)
    except ImportError as error:
        failed[module.name] = error.name
print(json.dumps(failed))
"""


def test_no_core_module_imports_an_optional_extra():
    """Every optional package of ``fope.extras.EXTRAS`` blocked: only the extras' own modules fail to import.
    (test_demo_numbers installs the wheel without the extras and runs the demo: this names the module that broke.)"""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", BLOCKED_IMPORTS], capture_output=True, text=True, check=True)
    failed = json.loads(done.stdout)
    assert failed == {name: EXTRA_MODULES[name] for name in failed}, failed
    assert set(failed) == set(EXTRA_MODULES), "an extra's module imported without its extra: update EXTRA_MODULES"


def test_a_feature_without_its_extra_says_which_extra_in_one_line(monkeypatch):
    import importlib.util
    import sys

    import pytest

    from fope.extras import MissingExtra, require

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name))
    monkeypatch.delitem(sys.modules, "tensorboard", raising=False)
    with pytest.raises(
        MissingExtra, match=r"logging needs the optional package 'tensorboard': pip install 'fope\[tens"
    ):
        require("tensorboard", "logging")
    monkeypatch.setitem(sys.modules, "transformers", None)  # what Python itself reads as "not importable"
    with pytest.raises(ImportError, match=r"fope convert needs the optional package 'transformers': pip install"):
        require("transformers", "fope convert")
    require("torch", "training")  # a present package passes
