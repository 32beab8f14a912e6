"""The direction of imports (docs/architecture.md), read from the source tree with ``ast``: nothing is imported.

``LAYERS`` lists the components, lowest first. A module may import its own component and any component of a
lower layer; never one of a higher layer, nor a sibling of its own layer (siblings stay independent).
Within ``mamba_jax.models`` the model files are peers too: they share code only through the modules in
``SHARED_WITHIN``. Every import counts, at the top of a file or inside a function (a lazy import is still a
dependency), ``if TYPE_CHECKING`` ones included.
"""

from __future__ import annotations

import ast
import inspect
import pathlib
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

LAYERS: list[tuple[str, ...]] = [
    ("mamba_jax_kernels",),  # the Pallas kernels (kernels/): only jax
    ("mamba_jax.typing", "mamba_jax.compile_cache", "mamba_jax.xla_cpu", "mamba_jax.fileio"),
    ("mamba_jax.ops", "mamba_jax.data", "mamba_jax.metrics", "mamba_jax.tokenizer"),
    ("mamba_jax.layers",),
    ("mamba_jax.models",),
    ("mamba_jax.checkpoint", "mamba_jax.config", "mamba_jax.decoding"),  # low shared modules
    ("mamba_jax.training", "mamba_jax.inference", "mamba_jax.convert"),
    ("mamba_jax.cli", "mamba_jax.summary"),
    ("mamba_jax", "train"),  # the package root and the training script
]

# Components whose modules are peers: one may import only the listed shared modules of its own component.
SHARED_WITHIN: dict[str, tuple[str, ...]] = {
    "mamba_jax.models": ("mamba_jax.models", "mamba_jax.models.tasnet"),
}

# Source folders and their import names (kernels/ is installed as mamba_jax_kernels, see pyproject.toml).
SOURCES = {"mamba_jax": "mamba_jax", "kernels": "mamba_jax_kernels", "train.py": "train"}


def module_files(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Import name -> file of every module under ``root`` (per ``SOURCES``)."""
    out = {}
    for src, name in SOURCES.items():
        path = root / src
        if path.is_file():
            out[name] = path
            continue
        for f in sorted(path.rglob("*.py")):
            parts = list(f.relative_to(path).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([name, *parts])] = f
    return out


def _is_package(file: pathlib.Path) -> bool:
    return file.name == "__init__.py"


def imports_of(name: str, file: pathlib.Path, known: set[str]) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every import in ``file`` of a module in ``known`` (absolute names;
    ``from pkg import sub`` counts as ``pkg.sub`` when that is a module)."""
    package = name if _is_package(file) else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        for t in targets:
            folder = t.split(".")[0]
            if folder in SOURCES and SOURCES[folder] != folder:  # ``import kernels``: not the installed name
                out.add((node.lineno, t))
                continue
            # the longest known module the name starts with (``mamba_jax.ops.selective_scan.Impl`` -> the module)
            parts = t.split(".")
            hit = next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in known), None)
            if hit is not None:
                out.add((node.lineno, hit))
    return sorted(out)


def component(module: str) -> str | None:
    """The component of ``module``: the longest ``LAYERS`` entry it is, or lies under (the package root
    ``mamba_jax`` holds only its ``__init__``: a new top-level module must be given a layer)."""
    names = [c for layer in LAYERS for c in layer
             if module == c or (module.startswith(c + ".") and c != "mamba_jax")]
    return max(names, key=len) if names else None


def rank(comp: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if comp in layer)


def violations(root: pathlib.Path) -> list[str]:
    """Every import against the direction of ``LAYERS`` / ``SHARED_WITHIN`` under ``root``, one line each."""
    files = module_files(root)
    known = set(files)
    problems = []
    for name, file in sorted(files.items()):
        src = component(name)
        if src is None:
            problems.append(f"{file.relative_to(root)}: module {name} is in no layer of LAYERS")
            continue
        for line, target in imports_of(name, file, known):
            dst = component(target)
            where = f"{file.relative_to(root)}:{line}: {name} imports {target}"
            folder = target.split(".")[0]
            if folder in SOURCES and SOURCES[folder] != folder:
                problems.append(f"{where}: {folder}/ is installed as {SOURCES[folder]} (pyproject.toml)")
            elif dst is None:
                problems.append(f"{where} (in no layer of LAYERS)")
            elif dst == src:
                shared = SHARED_WITHIN.get(src)
                if shared and target not in shared and name not in shared and target != name:
                    problems.append(f"{where}: peers in {src} share code only through {', '.join(shared)}")
            elif rank(dst) >= rank(src):
                kind = "a sibling" if rank(dst) == rank(src) else "a higher layer"
                problems.append(f"{where}: {dst} is {kind} of {src}")
    return problems


def test_imports_follow_the_layers():
    problems = violations(ROOT)
    assert not problems, "imports against the intended direction (docs/architecture.md):\n" + "\n".join(problems)


MAX_LINES = 400  # a module a reader takes in at once; split longer ones along a real seam


def oversized(root: pathlib.Path) -> list[str]:
    """``path: N lines`` for every module of the tree (``SOURCES``) longer than ``MAX_LINES``."""
    problems = []
    for file in module_files(root).values():
        n = len(file.read_text().splitlines())
        if n > MAX_LINES:
            problems.append(f"{file.relative_to(root)}: {n} lines")
    return sorted(problems)


def test_no_module_is_over_the_line_limit(tmp_path):
    problems = oversized(ROOT)
    assert not problems, f"modules over {MAX_LINES} lines (split them along a seam):\n" + "\n".join(problems)
    files = dict(CLEAN)
    files["mamba_jax/layers/norm.py"] = "x = 1\n" * (MAX_LINES + 1)  # the check itself can fail
    files["kernels/scan.py"] = "x = 1\n" * MAX_LINES
    assert oversized(_tree(tmp_path, files)) == [f"mamba_jax/layers/norm.py: {MAX_LINES + 1} lines"]


def test_every_component_exists():
    """A renamed or removed module must leave the table too (else the table silently checks nothing)."""
    known = set(module_files(ROOT))
    exists = lambda c: any(m == c or m.startswith(c + ".") for m in known)  # noqa: E731
    missing = [c for layer in LAYERS for c in layer if not exists(c)]
    missing += [m for mods in SHARED_WITHIN.values() for m in mods if m not in known]
    assert not missing, f"LAYERS / SHARED_WITHIN name modules that do not exist: {missing}"


def _tree(tmp_path: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


CLEAN = {
    "mamba_jax/__init__.py": "",
    "mamba_jax/typing.py": "",
    "mamba_jax/ops/__init__.py": "from mamba_jax.ops.scan import scan\n",
    "mamba_jax/ops/scan.py": "from mamba_jax_kernels.scan import kernel\nfrom mamba_jax.typing import Array\n",
    "mamba_jax/layers/__init__.py": "",
    "mamba_jax/layers/mixer.py": "from mamba_jax.ops import scan\nfrom . import norm\n",
    "mamba_jax/layers/norm.py": "",
    "mamba_jax/models/__init__.py": "",
    "mamba_jax/models/tasnet.py": "from mamba_jax.layers.mixer import x\n",
    "mamba_jax/models/a.py": "from mamba_jax.models.tasnet import Encoder\n",
    "mamba_jax/models/b.py": "from mamba_jax.models import build_model\n",
    "mamba_jax/training/__init__.py": "",
    "mamba_jax/training/loop.py": "def f():\n    from mamba_jax.models import a\n",
    "mamba_jax/inference/__init__.py": "",
    "kernels/scan.py": "import jax\n",
    "train.py": "from mamba_jax.training.loop import f\n",
}


def test_a_clean_tree_passes(tmp_path):
    assert violations(_tree(tmp_path, CLEAN)) == []


@pytest.mark.parametrize("rel, text, expected", [
    ("mamba_jax/ops/scan.py", "from mamba_jax.layers.mixer import x\n", "mamba_jax.layers is a higher layer"),
    ("mamba_jax/layers/norm.py", "def f():\n    from mamba_jax.training import loop\n", "a higher layer"),
    ("mamba_jax/training/loop.py", "import mamba_jax.inference\n", "a sibling of mamba_jax.training"),
    ("mamba_jax/models/a.py", "from mamba_jax.models.b import x\n", "share code only through"),
    ("mamba_jax/layers/mixer.py", "from ..training import loop\n", "a higher layer"),  # relative import
    ("kernels/scan.py", "from mamba_jax.typing import Array\n", "a higher layer"),  # kernels import only jax
    ("mamba_jax/ops/scan.py", "from kernels.scan import kernel\n", "installed as mamba_jax_kernels"),
    ("mamba_jax/newthing.py", "", "in no layer"),
])
def test_a_planted_violation_is_reported(tmp_path, rel, text, expected):
    files = dict(CLEAN)
    files[rel] = files.get(rel, "") + text
    problems = violations(_tree(tmp_path, files))
    assert len(problems) == 1 and expected in problems[0], problems


def test_package_exports():
    """``from mamba_jax.ops import selective_scan`` is the function, though a module of that name lives in the
    package; the module stays reachable by its full name; layers and training export their main classes."""
    import mamba_jax.ops.selective_scan  # noqa: F401 - a later import of the module must not undo the export
    from mamba_jax import layers, ops
    from mamba_jax.ops import selective_scan

    assert inspect.isfunction(selective_scan) and selective_scan is ops.selective_scan
    module = sys.modules["mamba_jax.ops.selective_scan"]
    assert inspect.ismodule(module) and module.selective_scan is selective_scan
    from mamba_jax.ops.selective_scan import Impl  # noqa: F401 - from-imports of the module still work

    assert layers.Mamba.__module__ == "mamba_jax.layers.mamba" and layers.MambaStack.__name__ == "MambaStack"
    from mamba_jax.training import train_and_evaluate
    from mamba_jax.training.loop import train_and_evaluate as loop_fn

    assert train_and_evaluate is loop_fn


def test_config_defaults_do_not_load_the_training_loop():
    """Configs import ``mamba_jax.training.defaults``: the package's export of the loop must stay lazy."""
    code = ("import sys, mamba_jax.training.defaults; "
            "print(sorted(m for m in sys.modules if m.startswith(('orbax', 'grain', 'mamba_jax.training.loop'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_pyproject_installs_every_package_under_its_import_name():
    """The explicit package list of pyproject.toml (needed for the kernels/ -> mamba_jax_kernels mapping) names
    every package folder of the tree, and kernels/ has no ``__init__.py`` (from a checkout's root, a folder
    ``kernels`` holding one would shadow the PyPI package ``kernels``)."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {name: pathlib.PurePosixPath(path) for name, path in tool.get("package-dir", {}).items()}
    folders = {f.parent for f in (ROOT / "mamba_jax").rglob("__init__.py")}
    folders |= {f.parent for f in (ROOT / "kernels").rglob("__init__.py")}
    want = set()
    for folder in folders:
        rel = folder.relative_to(ROOT).parts
        name = next((n for n, d in dirs.items() if rel[:len(d.parts)] == d.parts), None)
        want.add(".".join([name, *rel[len(dirs[name].parts):]]) if name else ".".join(rel))
    want.add("mamba_jax_kernels")
    assert set(tool["packages"]) == want
    assert dirs == {"mamba_jax_kernels": pathlib.PurePosixPath("kernels")}
    assert not (ROOT / "kernels" / "__init__.py").exists()
