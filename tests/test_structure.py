"""The layering the code map in the README describes, held by reading the imports: views → ui →
stmgt, the package never imports Streamlit or the dashboard, and no module outside stmgt/model/
reaches into another module's private names."""

import ast
from pathlib import Path

import pytest

from stmgt.paths import CHECKOUT

LAYERS = {"stmgt": {"stmgt"}, "ui": {"stmgt", "ui"}, "views": {"stmgt", "ui"}}
OURS = ("stmgt", "ui", "views")


def modules(folder: str) -> list[Path]:
    return sorted(p for p in (CHECKOUT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def imported(tree: ast.AST) -> list[tuple[str, list[str], int]]:
    """(module, names imported from it, line) for every import statement."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names], node.lineno))
    return found


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_imports_only_the_layers_below_it(layer):
    wrong = []
    for path in modules(layer):
        for module, _, line in imported(ast.parse(path.read_text())):
            top = module.split(".")[0]
            if (top in OURS and top not in LAYERS[layer]) or (layer == "stmgt" and top == "streamlit"):
                wrong.append(f"{path.relative_to(CHECKOUT)}:{line} imports {module}")
    assert wrong == []


def test_no_module_outside_the_model_imports_another_modules_private_names():
    wrong = []
    for path in [*modules("stmgt"), *modules("ui"), *modules("views"), *modules("tests"), *modules("benchmarks")]:
        if path.is_relative_to(CHECKOUT / "stmgt" / "model"):
            continue
        tree = ast.parse(path.read_text())
        ours = {}
        for module, names, line in imported(tree):
            if module.split(".")[0] not in OURS:
                continue
            wrong += [f"{path.relative_to(CHECKOUT)}:{line} imports {module}.{n}" for n in names if n.startswith("_")]
            ours.update({n: module for n in names} if names else {module.split(".")[0]: module})
        wrong += [f"{path.relative_to(CHECKOUT)}:{node.lineno} uses {node.value.id}.{node.attr}"
                  for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ours
                  and node.attr.startswith("_") and not node.attr.startswith("__")]
    assert wrong == []
