"""How the packages depend on each other: no import cycles (imports inside functions count too, so none can be
hidden there), training never imports the benchmarks, and the shared library imports none of its users."""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("facemask", "training", "bench", "classification", "detection")
TRAINING_STACK = {"torch", "torchvision", "fastai", "onnx2torch", "onnx"}  # optional, heavy: seconds to import


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_modules() -> dict[str, Path]:
    modules = {_module_name(path): path for package in PACKAGES for path in (REPO_ROOT / package).rglob("*.py")}
    modules["infer"] = REPO_ROOT / "infer.py"
    return modules


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules a file imports anywhere in it (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def _module_level_imports(path: Path) -> set[str]:
    """Modules a file imports when it is imported: at module level, in if/try/with blocks too, not in functions."""
    found, todo = set(), list(ast.parse(path.read_text(), filename=str(path)).body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.update([node.module] + [f"{node.module}.{alias.name}" for alias in node.names])
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))
    return found


def _loads_the_training_stack(name: str, modules: dict[str, Path], seen: set[str] | None = None) -> bool:
    """Importing the module imports torch or fastai, itself or through the project modules it imports."""
    seen = seen if seen is not None else set()
    seen.add(name)
    imported = _module_level_imports(modules[name])
    return any(module.split(".")[0] in TRAINING_STACK for module in imported) or any(
        _loads_the_training_stack(module, modules, seen) for module in imported if module in modules
        and module not in seen)


def _graph() -> dict[str, set[str]]:
    modules = _project_modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, components, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_graph_finds_a_cycle_when_there_is_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_dependencies_point_towards_the_shared_library():
    """facemask <- services, training, bench: the library imports none of them, and training no benchmark."""
    graph = _graph()
    for name in graph:
        reached = _reachable(graph, name)
        if name.startswith("facemask"):
            assert not {m for m in reached if not m.startswith("facemask")}, name
        if name.startswith("training"):
            assert not {m for m in reached if m.startswith("bench")}, name
        if name.startswith(("classification", "detection")):
            assert not {m for m in reached if m.startswith(("training", "bench"))}, name


# The library and the applications on it (docs/architecture.md): which facemask sub-package may import which.
# `facemask` itself (the public API in facemask/__init__.py) sits on the core; the services use the core, the video
# path and the shared service code, never the command line or the watch.
ALLOWED_ARROWS = {
    "facemask.core": {"facemask.core"},
    "facemask.video": {"facemask.core", "facemask.video"},
    "facemask.serving": {"facemask.core", "facemask.serving"},
    "facemask.watch": {"facemask.core", "facemask.video", "facemask.watch"},
    "facemask.cli": {"facemask.core", "facemask.video", "facemask.serving", "facemask.watch", "facemask.cli",
                     "facemask.worker"},
    # `facemask worker` (the job queue's, issue 34): an application on the jobs, as the command is
    "facemask.jobs": {"facemask.core", "facemask.video", "facemask.serving", "facemask.jobs"},
    "facemask.worker": {"facemask.core", "facemask.jobs", "facemask.worker"},
    "facemask": {"facemask", "facemask.core"},
    "classification": {"facemask.core", "facemask.serving", "classification"},
    "detection": {"facemask.core", "facemask.video", "facemask.serving", "facemask.jobs", "detection"},
}
ARROW_EXCEPTIONS: set[tuple[str, str]] = set()  # (module, layer) pairs allowed for now; none


def _layer(module: str) -> str | None:
    """The ALLOWED_ARROWS key a module belongs to: its facemask sub-package, facemask's own modules, or a service."""
    parts = module.split(".")
    if parts[0] == "facemask" and parts[-1] == "__main__":  # python -m facemask[.watch]: a command, as cli's are
        return "facemask.cli"
    if parts[0] == "facemask":
        if len(parts) > 1 and f"facemask.{parts[1]}" in ALLOWED_ARROWS:
            return f"facemask.{parts[1]}"
        return "facemask"
    return parts[0] if parts[0] in ALLOWED_ARROWS else None


def _wrong_arrows(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    wrong = []
    for name, imported in graph.items():
        layer = _layer(name)
        if layer is None:
            continue
        for target in imported:
            target_layer = _layer(target)
            if target_layer is not None and target_layer not in ALLOWED_ARROWS[layer] \
                    and (name, target_layer) not in ARROW_EXCEPTIONS:
                wrong.append((name, target))
    return sorted(wrong)


def test_the_arrow_check_finds_a_wrong_arrow():
    graph = {"facemask.core.detector": {"facemask.video.loop"}, "facemask.video.loop": {"facemask.core.detector"},
             "facemask.watch.cli": {"facemask.cli.runner"}, "detection.app.routes": {"facemask.cli.annotate"}}
    assert _wrong_arrows(graph) == [("detection.app.routes", "facemask.cli.annotate"),
                                    ("facemask.core.detector", "facemask.video.loop"),
                                    ("facemask.watch.cli", "facemask.cli.runner")]


def test_the_packages_import_only_along_the_allowed_arrows():
    """core <- video <- watch, core <- serving, and the command on all of them; the services never import the
    command line or the watch, and the core imports nothing of the rest (imports inside functions count)."""
    assert _wrong_arrows(_graph()) == []


def test_the_library_reads_no_environment():
    """Settings are read once, by entry points (Settings.from_env); the core and the video path are given them."""
    readers = [path.relative_to(REPO_ROOT).as_posix() for folder in ("facemask/core", "facemask/video")
               for path in sorted((REPO_ROOT / folder).rglob("*.py"))
               if "os.environ" in path.read_text() or "getenv" in path.read_text()]
    assert readers == ["facemask/core/settings.py"]


# Slow: the modules that import torch or fastai (training), about 4 s the first time; the rest are imported in the
# inner loop.
@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if _loads_the_training_stack(name, modules) else name
    for modules in [_project_modules()] for name in sorted(modules)
    if not name.endswith(("gunicorn.conf", "__main__"))])  # a __main__ runs its command when imported
def test_every_module_imports(name):
    try:
        importlib.import_module(name)
    except ImportError as error:  # an optional heavy dependency (torch, fastai) absent here is not a layout problem
        if error.name and error.name.split(".")[0] in TRAINING_STACK:
            pytest.skip(f"{name} needs {error.name}")
        raise


def test_the_image_path_does_not_import_the_video_tracker():
    """norfair and the scipy it brings cost about a second of every CLI run and worker start; only video needs them."""
    image_path = "facemask.core.pipeline", "facemask.cli.runner", "detection.app", "classification.app", "infer"
    loaded = subprocess.run([sys.executable, "-c", f"import sys, {', '.join(image_path)}; "
                             "print(' '.join(m for m in sys.modules if m.split('.')[0] in ('norfair', 'scipy')))"],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []
