"""The import graph runs one way (docs/ARCHITECTURE.md): library -> stage math -> stage runners -> top level.

Read from the source with `ast`, so a violation fails here before it becomes an import circle at run time.
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "instructgpt_jax")
MATH = {"pretrain", "sft", "reward", "ppo", "rollout"}
TOP = {"evaluate", "eval_rm", "eval_figures", "tables", "report", "rounds", "pipeline", "bench", "bench_lengths", "hf", "cli"}


def layer(module: str) -> int:
    """0 library, 1 stage math, 2 stage runners, 3 pipeline, evaluation, reports and tools."""
    if module.startswith("stages"):
        return 2
    return 1 if module in MATH else 3 if module in TOP else 0


def modules() -> dict[str, str]:
    out = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                out[rel.removesuffix(".__init__") if rel != "__init__" else ""] = path
    return out


def own_imports(path: str, known) -> list[tuple[str, bool, int]]:
    """(imported module, inside a function?, line) for every import of this package's modules."""
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            names = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names = [f"{child.module}.{a.name}" for a in child.names] + [child.module]
            for full in names:
                if full.startswith("instructgpt_jax."):
                    name = full.removeprefix("instructgpt_jax.")
                    while name not in known and "." in name:
                        name = name.rsplit(".", 1)[0]
                    if name in known:
                        out.append((name, inner, child.lineno))
            visit(child, inner)

    visit(ast.parse(open(path).read()), False)
    return out


MODULES = modules()
GRAPH = {m: own_imports(p, MODULES) for m, p in MODULES.items()}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m))
def test_imports_run_one_way(module):
    for target, in_function, line in GRAPH[module]:
        where = f"instructgpt_jax/{module.replace('.', '/')}.py:{line}"
        assert not in_function, f"{where}: imports {target} inside a function; import at module top"
        if target == module or (module == "stages" and target.startswith("stages.")):
            continue
        assert layer(target) <= layer(module), f"{where}: {module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        if layer(module) == 2:
            assert layer(target) < 2, f"{where}: stage runner {module} imports stage runner {target}"


def test_no_import_circles():
    edges = {m: {t for t, _, _ in GRAPH[m] if t != m} for m in MODULES}
    state = {}

    def visit(m, path):
        state[m] = "open"
        for t in edges[m]:
            assert state.get(t) != "open", "import circle: " + " -> ".join(path + [m, t])
            if t not in state:
                visit(t, path + [m])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [])


def test_layer_rule_catches_a_runner_importing_a_runner(tmp_path):
    # The check itself can fail: a runner that imports another runner is reported.
    path = tmp_path / "bad.py"
    path.write_text("from instructgpt_jax.stages import sft\n")
    [(target, in_function, _)] = [i for i in own_imports(str(path), MODULES) if i[0] == "stages.sft"]
    assert target == "stages.sft" and not in_function and layer(target) == 2
