"""The notebooks' install cell gives an importable mamba-jax in a fresh environment (issue 30, item 1).

The install cell (the first code cell, the same in every notebook) runs through nbclient in a kernel of a fresh
venv that holds only the notebook runner (nbclient, ipykernel, nbformat): inside a checkout (a clone of this one,
from its ``notebooks/``), and outside one (an empty folder, as Colab's ``/content``, cloning this checkout through
``MAMBA_JAX_REPO``). A second cell in the same kernel then imports ``mamba_jax``, ``ml_collections`` and ``jax``,
and every installed distribution that ``constraints.txt`` pins has the pinned version. One venv serves the
session: its first use installs everything (mostly pip), later ones uninstall mamba-jax and install it again, so
each run of the cell installs. Needs the package index (and so is ``slow``: ~260 CPU-seconds, 12 minutes on 2
busy cores), except the error-message test (~4 CPU-seconds), which runs in this venv's kernel.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NAMES = [p.stem for p in NOTEBOOKS]
IMPORT_CHECK = ("import mamba_jax, ml_collections, jax\n"
                "import pathlib\nprint(pathlib.Path(mamba_jax.__file__).resolve())")


def install_cell(path: pathlib.Path) -> str:
    """The source of the notebook's first code cell."""
    return next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code").source


def _execute(sources: list[str], kernel: str, cwd: pathlib.Path, allow_errors: bool = False) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    NotebookClient(nb, timeout=1200, kernel_name=kernel, allow_errors=allow_errors,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def _stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def _error(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert len(errors) == 1, cell.outputs
    return errors[0]


def _kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PYTHONPATH", "VIRTUAL_ENV", "MAMBA_JAX_REPO", "MAMBA_JAX_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")


def test_install_cell_failures_are_one_line(tmp_path, monkeypatch):
    """Outside a checkout: a clone that fails, and a clone folder taken by something else, each one line."""
    _kernel_env(monkeypatch)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("not a checkout\n")
    cell = install_cell(NOTEBOOKS[0])
    nb = _execute([f"import os; os.environ['MAMBA_JAX_REPO'] = {str(tmp_path / 'no-such-repo')!r}", cell,
                   f"os.environ['MAMBA_JAX_DIR'] = {str(taken)!r}", cell], "python3", tmp_path, allow_errors=True)
    for i, expected in ((1, rf"git clone {re.escape(str(tmp_path / 'no-such-repo'))} \(MAMBA_JAX_REPO\) failed: "
                            r"fatal: repository .* does not exist"),
                        (3, rf"{re.escape(str(taken))} exists and is not a mamba-jax checkout; set MAMBA_JAX_DIR")):
        err = _error(nb.cells[i])
        assert err.ename == "InstallError" and err.traceback == [f"mamba-jax install: {err.evalue}"], err
        assert re.search(expected, err.evalue), err.evalue
    assert not (tmp_path / "mamba-jax").exists()  # the failed clone left nothing behind


# --- a fresh venv (slow) ---------------------------------------------------------------------------------------------


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kw)
    assert p.returncode == 0, f"{cmd}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def _installed(python: pathlib.Path) -> dict[str, str]:
    listing = json.loads(_run([python, "-m", "pip", "list", "--format", "json"]).stdout)
    return {re.sub(r"[-_.]+", "-", d["name"]).lower(): d["version"] for d in listing}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> dict[str, pathlib.Path]:
    """A venv with only the notebook runner, its kernelspec "mamba-jax-fresh", and a clone of this checkout."""
    base = tmp_path_factory.mktemp("fresh")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt", "nbclient", "ipykernel", "nbformat"])
    spec = base / "jupyter" / "kernels" / "mamba-jax-fresh"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fresh venv", "language": "python"}))
    _run(["git", "clone", "-q", ROOT, base / "checkout"])
    return {"python": python, "jupyter": base / "jupyter", "checkout": base / "checkout"}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["checkout", "colab"])
@pytest.mark.parametrize("name", NAMES)
def test_install_cell_in_a_fresh_venv(name, case, fresh, tmp_path, monkeypatch):
    _kernel_env(monkeypatch)
    monkeypatch.setenv("JUPYTER_PATH", str(fresh["jupyter"]))
    _run([fresh["python"], "-m", "pip", "uninstall", "-q", "-y", "mamba-jax"])
    if case == "checkout":
        cwd, root = fresh["checkout"] / "notebooks", fresh["checkout"]
    else:  # Colab: an empty folder, the repository cloned from MAMBA_JAX_REPO (this checkout) into ./mamba-jax
        monkeypatch.setenv("MAMBA_JAX_REPO", str(ROOT))
        cwd, root = tmp_path, tmp_path / "mamba-jax"
    nb = _execute([install_cell(NOTEBOOKS[NAMES.index(name)]), IMPORT_CHECK], "mamba-jax-fresh", cwd)
    assert "(installed now in" in _stdout(nb.cells[0]), nb.cells[0].outputs
    assert pathlib.Path(_stdout(nb.cells[1]).strip()) == (root / "mamba_jax" / "__init__.py").resolve()
    pins, installed = _pins(), _installed(fresh["python"])
    assert "jax" in installed and "librosa" in installed
    assert {n: v for n, v in installed.items() if n in pins and pins[n] != v} == {}, "not the versions pinned"


@pytest.mark.slow
def test_install_cell_says_when_a_restart_is_needed(fresh, monkeypatch):
    """A module imported before pip replaces its distribution: one line asks for a restart; after it, all imports."""
    _kernel_env(monkeypatch)
    monkeypatch.setenv("JUPYTER_PATH", str(fresh["jupyter"]))
    python, cwd = fresh["python"], fresh["checkout"] / "notebooks"
    _run([python, "-m", "pip", "uninstall", "-q", "-y", "mamba-jax"])
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "absl-py==2.1.0"])  # constraints.txt pins another
    assert _pins()["absl-py"] != "2.1.0"
    cell = install_cell(NOTEBOOKS[0])
    nb = _execute(["import absl", cell], "mamba-jax-fresh", cwd, allow_errors=True)
    err = _error(nb.cells[1])
    assert err.traceback == [f"mamba-jax install: {err.evalue}"], err
    assert "restart the kernel" in err.evalue and "imported before pip replaced them: absl" in err.evalue
    assert _installed(python)["absl-py"] == _pins()["absl-py"]
    nb = _execute([cell, IMPORT_CHECK], "mamba-jax-fresh", cwd)  # a new kernel: the restart
    assert "(already installed in" in _stdout(nb.cells[0])
    assert pathlib.Path(_stdout(nb.cells[1]).strip()) == (fresh["checkout"] / "mamba_jax" / "__init__.py").resolve()
