"""The engine's house rules (docs/architecture.md), read from the source with `ast`, so they hold by test:

- no import circle anywhere in resnet_app, counting imports inside functions as well as at the top;
- imports only go down: core.data imports nothing of model, train or use; core.model nothing of train
  or use; core.use nothing of train; nothing in core imports the UI, the command line or Qt;
- core holds its four packages and no loose module but errors.py and files.py;
- no module in resnet_app is over 700 lines.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "resnet_app"
MAX_LINES = 700
QT = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "shiboken6")
# package -> the engine packages it must never import
FORBIDDEN = {
    "resnet_app.core.data": ("resnet_app.core.model", "resnet_app.core.train", "resnet_app.core.use"),
    "resnet_app.core.model": ("resnet_app.core.train", "resnet_app.core.use"),
    "resnet_app.core.use": ("resnet_app.core.train",),
    "resnet_app.core": ("resnet_app.ui", "resnet_app.cli", *QT),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str) -> set[str]:
    """Every module `name` imports, anywhere in its code (the top, functions, `if TYPE_CHECKING`)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from package import module` imports that module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return found


GRAPH = {name: {m for m in imported(name) if m in MODULES and m != name} for name in MODULES}


def test_the_tree_was_read():
    assert "resnet_app.core.train.loop" in MODULES and "resnet_app.core.use.classifier" in MODULES
    assert "resnet_app.core.train.distributed.world" in GRAPH["resnet_app.core.train.loop"]


def test_no_import_circle():
    # Tarjan's strongly connected components: a component of two or more modules is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(GRAPH[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert circles == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_only_go_down(package):
    wrong = sorted(
        f"{name} imports {target}"
        for name in MODULES if name == package or name.startswith(package + ".")
        for target in imported(name)
        if any(target == bad or target.startswith(bad + ".") for bad in FORBIDDEN[package])
    )
    assert wrong == []


def test_core_holds_packages_and_no_loose_module():
    core = PACKAGE / "core"
    loose = sorted(p.name for p in core.glob("*.py"))
    assert loose == ["__init__.py", "errors.py", "files.py"]
    packages = sorted(p.name for p in core.iterdir() if (p / "__init__.py").is_file())
    assert packages == ["data", "model", "train", "use"]


def test_every_package_says_its_job():
    for init in (PACKAGE / "core").rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc, f"{init} has no docstring"


def test_no_module_over_700_lines():
    long = sorted(f"{name}: {n} lines" for name, path in MODULES.items()
                  if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES)
    assert long == []


def private_members(module: str, class_name: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    (cls,) = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == class_name]
    return {node.name for node in cls.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("_")
            and not node.name.endswith("__")}


def test_nothing_outside_the_classifier_touches_its_private_parts():
    """Predict, evaluate, calibration, sort, review and Grad-CAM read the model's outputs through
    Classifier's public API (output_batches, predict_paths, open_image, preprocess), so batching and
    preprocessing live in one place."""
    home = "resnet_app.core.use.classifier"
    private = private_members(home, "Classifier") | private_members(home, "OnnxClassifier")
    assert {"_read", "_output_batch"} <= private
    offenders = []
    for name, path in MODULES.items():
        if name == home:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in private:
                offenders.append(f"{name}:{node.lineno} .{node.attr}")
    assert offenders == []
