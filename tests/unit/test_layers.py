"""The house's rules, checked on the source: layers, no import cycles, modules a reader can hold.

- ``gpu_ops`` is the compute kernel that runs in the Batch container: it imports nothing from
  ``resources`` or ``odins_ravne_assets``, and no Dagster but ``dagster_pipes``.
- ``resources`` (outside systems) may use ``gpu_ops`` but never the orchestration package.
- No cycle among the project's modules, counting imports inside functions too (a lazy import
  hides a cycle from Python, not from a reader).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gpu_ops", "resources", "odins_ravne_assets")
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports (``from pkg import mod`` resolves to the module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_gpu_ops_and_resources_import_nothing_above_them():
    wrong = []
    for module, imported in _graph().items():
        top = module.split(".")[0]
        for target in imported:
            target_top = target.split(".")[0]
            if top == "gpu_ops" and target_top != "gpu_ops":
                wrong.append(f"{module} imports {target}")
            if top == "resources" and target_top == "odins_ravne_assets":
                wrong.append(f"{module} imports {target}")
    assert not wrong, "layer violations:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_module_over_600_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_batch_entrypoint_loads_no_orchestration_code():
    """What the container runs, imported in a clean interpreter: the kernel and dagster_pipes only."""
    kernel = sorted(name for name in _modules() if name.startswith("gpu_ops"))
    code = (
        "import importlib, json, sys\n"
        f"for name in {kernel!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    above = [m for m in loaded if m.split(".")[0] in ("resources", "odins_ravne_assets", "dagster", "dagster_aws",
                                                       "dagster_webserver", "dagster_graphql", "duckdb", "hdbscan")]
    assert not above, f"the kernel pulled in: {above[:20]}"
    assert "dagster_pipes" in loaded and "gpu_ops.entrypoint" in loaded
