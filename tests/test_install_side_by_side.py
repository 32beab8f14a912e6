"""mamba-jax and the PyPI distribution ``kernels`` (Hugging Face) install side by side.

Before, both installed a top-level package ``kernels``: the second install overwrote the first one's files. Now
the repository's ``kernels/`` folder is installed as ``mamba_jax_kernels`` (pyproject.toml). In a fresh venv
(which sees this venv's dependencies through a ``.pth`` line, so nothing else is installed): a regular (not
editable) install of this checkout and ``pip install kernels`` from the package index, both ``--no-deps``;
then their files do not overlap, ``kernels`` is Hugging Face's, even with the checkout's root first on
``sys.path``, and ``mamba_jax``'s scan and kernel import. Needs the package index (and so is ``slow``).
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

CHECK = """
import importlib.util, pathlib, sys
site = pathlib.Path(sys.argv[1])
spec = importlib.util.find_spec("kernels")
assert pathlib.Path(spec.origin) == site / "kernels" / "__init__.py", spec
from mamba_jax_kernels.selective_scan import BlockConfig, selective_scan as kernel_scan
from mamba_jax.ops import selective_scan
import mamba_jax, mamba_jax_kernels
if sys.argv[2] == "installed":  # (from the checkout's root, its own mamba_jax/ comes first)
    assert pathlib.Path(mamba_jax.__file__).is_relative_to(site), mamba_jax.__file__
assert all(pathlib.Path(p).is_relative_to(site) for p in mamba_jax_kernels.__path__), mamba_jax_kernels.__path__
print("SIDE_BY_SIDE_OK")
"""


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert p.returncode == 0, f"{cmd}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.mark.slow
def test_mamba_jax_and_pypi_kernels_install_side_by_side(tmp_path):
    (tmp_path / "src").mkdir()
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    site = pathlib.Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # jax, flax, ... of this venv
    src = tmp_path / "src"  # what the package is built from (a build in the checkout would leave build/ there)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("mamba_jax", "kernels"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps"]
    _run(pip + [str(src)], cwd=tmp_path)
    _run(pip + ["kernels"], cwd=tmp_path)
    records = {}
    for dist in site.glob("*.dist-info"):
        if dist.name.startswith(("mamba_jax-", "kernels-")):
            records[dist.name.split("-")[0]] = {line.split(",")[0] for line in (dist / "RECORD").read_text().splitlines()
                                                if not line.split(",")[0].endswith(".pyc")}
    assert set(records) == {"mamba_jax", "kernels"}, sorted(records)
    assert not records["mamba_jax"] & records["kernels"]  # no file of one is a file of the other (scripts included)
    tops = {k: {f.split("/")[0] for f in v if not f.startswith("../") and not f.split("/")[0].endswith(".dist-info")}
            for k, v in records.items()}  # top-level names in site-packages ("../" entries are the bin/ scripts)
    assert not tops["mamba_jax"] & tops["kernels"], tops
    assert {"mamba_jax", "mamba_jax_kernels"} <= tops["mamba_jax"] and "kernels" in tops["kernels"]
    for cwd, where in ((tmp_path, "installed"), (ROOT, "checkout")):  # the checkout's kernels/ shadows nothing
        out = _run([py, "-c", CHECK, str(site), where], cwd=cwd)
        assert "SIDE_BY_SIDE_OK" in out.stdout
