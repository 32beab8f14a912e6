"""Experiment config files: ``path/to/config.py[:arg]`` -> ``get_config(arg)`` (a ``ml_collections.ConfigDict``).

The one loader for every caller that is not ``train.py`` (whose ``--config`` flag is ml_collections'
``config_flags``): the CLI, ``mamba_jax.summary``, the notebooks, benchmarks and tests.

A config file may import its siblings as ``<folder>.<name>`` (``from configs.conmamba_large import
asr_config``). The loader makes that work without touching ``sys.path`` (which would make every other
folder beside ``configs/`` importable too, ``kernels/`` or ``tests/`` of a checkout included): the file's
folder is registered as the package ``<folder name>`` (``sys.modules``), whose only search path is that
folder. Loading from another folder of the same name (a second checkout) re-registers the package there.
"""

from __future__ import annotations

import difflib
import importlib.util
import pathlib
import sys
import types

import ml_collections

__all__ = ["UnknownFieldError", "check_overrides", "config_file_problem", "load_config"]


def _folder_package(folder: pathlib.Path) -> types.ModuleType:
    """The package ``folder.name`` whose search path is ``folder`` only (registered in ``sys.modules``)."""
    name, path = folder.name, str(folder)
    package = sys.modules.get(name)
    if package is not None and list(getattr(package, "__path__", [])) == [path]:
        return package
    for key in [k for k in sys.modules if k.startswith(f"{name}.")]:  # siblings cached from another folder
        del sys.modules[key]
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [path]
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    return package


def load_config(spec: str) -> ml_collections.ConfigDict:
    """``path/to/config.py[:arg]`` -> that file's ``get_config(arg)`` (``arg`` None when absent).

    A missing file is ``FileNotFoundError``; ``get_config``'s own errors (an unknown ``arg``) pass through."""
    path, _, arg = spec.partition(":")
    file = pathlib.Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    file = file.resolve()
    package = _folder_package(file.parent)
    module_spec = importlib.util.spec_from_file_location(f"{package.__name__}.{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)  # not cached in sys.modules: every call reads the file afresh
    return module.get_config(arg or None)


def config_file_problem(spec: str) -> str | None:
    """``None`` when ``spec`` (``path/to/config.py[:arg]``) names an existing file, else a one-line message
    with the closest file of that folder (or of ``configs/``)."""
    path = pathlib.Path(spec.partition(":")[0]).expanduser()
    if path.is_file():
        return None
    folder = path.parent if path.parent.is_dir() else pathlib.Path("configs")
    names = sorted(f.name for f in folder.glob("*.py") if not f.name.startswith("_")) if folder.is_dir() else []
    close = difflib.get_close_matches(path.name, names, n=1)
    hint = f"did you mean {folder / close[0]}?" if close else (
        f"{folder} holds {', '.join(n.removesuffix('.py') for n in names)}" if names else
        "run from the repository root, where configs/ holds one file per model size")
    return f"config file {path} not found ({hint})"


class UnknownFieldError(ValueError):
    """A ``--config.a.b=v`` override names a field the config does not have. ``flag`` is the override as typed
    (``--config.train.num_step``), ``field`` the first unknown part, ``suggestion`` the flag with its closest
    field (or None), ``fields`` the fields of the block it looked in (``where``, e.g. ``config.train``)."""

    def __init__(self, flag: str, field: str, suggestion: str | None, fields: list[str], where: str = "config"):
        self.flag, self.field, self.suggestion, self.fields, self.where = flag, field, suggestion, fields, where
        msg = f"{flag}: no field {field!r} in this config"
        if suggestion:
            msg += f"; did you mean {suggestion}?"
        if fields:
            msg += f" (the fields of {where}: {', '.join(fields)})"
        super().__init__(msg)


def check_overrides(config: ml_collections.ConfigDict, argv: list[str], name: str = "config") -> None:
    """Raises ``UnknownFieldError`` for the first ``--<name>.a.b[=v]`` argument of ``argv`` whose dotted path
    is not a field of ``config``, before absl and ml_collections apply the overrides (their error is a
    traceback-shaped ``KeyError``)."""
    for arg in argv:
        if arg == "--":
            break
        flag = arg.split("=", 1)[0]
        dotted = flag.lstrip("-")
        dotted = dotted.removeprefix("no") if dotted.startswith(f"no{name}.") else dotted  # --noconfig.a.flag
        if not dotted.startswith(f"{name}."):
            continue
        node, where = config, name
        parts = dotted.split(".")[1:]
        for i, part in enumerate(parts):
            fields = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            if part not in fields:
                close = difflib.get_close_matches(part, fields, n=1)
                suggestion = None
                if close:  # the flag as typed with the unknown part replaced
                    fixed = ".".join([*parts[:i], close[0], *parts[i + 1:]])
                    suggestion = flag[:len(flag) - len(dotted)] + dotted[:len(dotted) - len(".".join(parts))] + fixed
                raise UnknownFieldError(flag, part, suggestion, fields, where)
            node, where = node[part], f"{where}.{part}"
