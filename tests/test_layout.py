"""The package's layout: imports point one way (no cycles), and the model needs no file I/O or token code."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = {"codec": ROOT / "codec", "codec.kernels": ROOT / "kernels", "codec.eval": ROOT / "eval"}


def _modules() -> dict[str, Path]:
    out = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p not in ("__init__", "__main__")]
            out[".".join([package, *parts])] = path
    return out


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """The package modules `name` imports, at any depth of its code (call-time imports count too)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            found.update(subs if len(subs) == len(node.names) else [target, *subs])
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != name}


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(name):] + [name]))
        if name not in done:
            for dep in sorted(graph[name]):
                visit(dep, trail + [name])
            done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_the_model_imports_no_files_training_or_tokens():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    reach, todo = set(), ["codec.model"]
    while todo:
        for dep in graph[todo.pop()] - reach:
            reach.add(dep)
            todo.append(dep)
    assert not [m for m in reach if m.startswith(("codec.io", "codec.train", "codec.tts", "codec.cli"))], reach
    code = "import sys, codec; print(sorted(m for m in ('soundfile', 'codec.tts', 'codec.train') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
