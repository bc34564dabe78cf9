"""Imports flow one way (DESIGN section 2, STYLE "Our own habits"):

    workload -> training -> schedule -> compiler -> sim / analytical -> report -> api
    -> experiments -> cli

with a foundation (errors, config, the IR, the shared timing formulas, energy, progress,
paper constants) that every stage may import. The graph is read from the source with
``ast`` (every ``import`` statement, also those inside functions, which still make a
dependency; those under ``if TYPE_CHECKING:`` are left out, as they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "wavecore_sim"

#: Stage of each module, by the longest matching name prefix; rank = position in the flow.
STAGES = [
    (
        "foundation",
        (
            "wavecore_sim",
            "wavecore_sim.errors",
            "wavecore_sim.config",
            "wavecore_sim.config_docs",
            "wavecore_sim.ir",
            "wavecore_sim.timing",
            "wavecore_sim.energy",
            "wavecore_sim.progress",
            "wavecore_sim.paper",
        ),
    ),
    ("workload", ("wavecore_sim.workload", "wavecore_sim.onnx_import")),
    ("training", ("wavecore_sim.training",)),
    ("schedule", ("wavecore_sim.schedule", "wavecore_sim.schedule_opt", "wavecore_sim.tiling")),
    ("compiler", ("wavecore_sim.compiler",)),
    ("sim", ("wavecore_sim.sim",)),
    ("analytical", ("wavecore_sim.analytical",)),
    ("report", ("wavecore_sim.report",)),
    ("referee", ("wavecore_sim.referee",)),  # compiles and simulates mbs-opt's plans
    ("api", ("wavecore_sim.api",)),
    ("experiments", ("wavecore_sim.experiments",)),
    (
        "cli",
        (
            "wavecore_sim.cli",
            "wavecore_sim.cli_experiments",
            "wavecore_sim.argtypes",
            "wavecore_sim.__main__",
        ),
    ),
]
#: sim and analytical are one step of the flow: both read the compiled program, neither
#: the other.
RANK = {
    "foundation": 0,
    "workload": 1,
    "training": 2,
    "schedule": 3,
    "compiler": 4,
    "sim": 5,
    "analytical": 5,
    "report": 6,
    "referee": 7,
    "api": 8,
    "experiments": 9,
    "cli": 10,
}


def module_files() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skip.update(id(n) for n in ast.walk(child))
    return skip


def imports_of(module: str, path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``module`` imports (``from . import x`` names module x
    when x is a module, else the package)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("wavecore_sim"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + (node.module.split(".") if node.module else []))
            else:
                name = node.module or ""
            if not name.startswith("wavecore_sim"):
                continue
            for alias in node.names:
                sub = f"{name}.{alias.name}"
                found.add(sub if sub in modules else name)
    return {m for m in found if m in modules and m != module}


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {m: imports_of(m, p, set(files)) for m, p in files.items()}


def stage_of(module: str) -> str:
    best, best_len = None, -1
    for stage, prefixes in STAGES:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = stage, len(prefix)
    assert best is not None, f"{module} is in no stage: add it to STAGES"
    return best


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return [*stack[stack.index(d) :], d]
            if d not in state and (cycle := visit(d)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_the_reader_sees_the_known_edges():
    """The graph reader itself: edges we know are there (relative, nested, from-package)."""
    graph = import_graph()
    assert "wavecore_sim.compiler" in graph["wavecore_sim.api"]
    assert "wavecore_sim.report.summary" in graph["wavecore_sim.api"]
    assert "wavecore_sim.experiments.runner" in graph["wavecore_sim.experiments.reproduce"]
    assert "wavecore_sim.config" in graph["wavecore_sim.timing"]


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_modules_import_each_other_in_a_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_follow_the_stage_order():
    bad = []
    for module, deps in sorted(import_graph().items()):
        stage = stage_of(module)
        for dep in sorted(deps):
            dep_stage = stage_of(dep)
            if dep_stage == "foundation" or dep_stage == stage:
                continue
            if RANK[dep_stage] >= RANK[stage]:
                bad.append(f"{module} ({stage}) imports {dep} ({dep_stage})")
    assert not bad, "imports against the flow:\n" + "\n".join(bad)


def test_foundation_imports_no_stage():
    graph = import_graph()
    bad = [
        f"{m} imports {d}"
        for m in graph
        if stage_of(m) == "foundation"
        for d in graph[m]
        if stage_of(d) != "foundation"
    ]
    assert not bad, bad


def test_no_private_names_imported_across_modules():
    """``from .api import _OutputDir`` and the like: a private name stays in its module."""
    for name, path in module_files().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module is not None:
                private = [
                    a.name
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
                assert not private, f"{name} imports private {private} from {node.module}"
