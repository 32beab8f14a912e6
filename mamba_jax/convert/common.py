"""Shared machinery of the PyTorch -> mamba-jax weight converters.

A converter walks our model's own parameter tree (``nnx.eval_shape`` of ``build_model``: nothing is
allocated) and, for each of our leaves, takes one original state_dict entry, transforms its layout and
checks its shape. ``StateDictMapper`` records which original keys were consumed and which of our leaves
were filled, so ``finish`` can report, in one error, every missing key, every unexpected key and every
mis-shaped tensor (expected vs actual shape).

Layout rules (docs/mamba.md), chosen from our leaf's path by ``default_transform``:

* ``.../kernel`` (nnx.Linear, ``[in, out]``) <- torch Linear ``weight [out, in]``: transpose.
* ``.../conv1d*/weight`` of rank 2 (our depthwise causal conv, ``[K, E]``) <- torch ``[E, 1, K]``.
* anything else keeps torch's layout; singleton axes may differ (torch ``[1, 1, N]`` -> ours ``[N]``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import jax
import numpy as np
from flax import nnx

from mamba_jax.models import build_model

Transform = Callable[[np.ndarray, tuple[int, ...]], np.ndarray]


class ConversionError(ValueError):
    """A state_dict does not fit the model: the message lists every problem, one per line."""


def path_str(path) -> str:
    """``a/b/0/c`` for a jax key path (the same spelling as ``mamba_jax.checkpoint``)."""
    return jax.tree_util.keystr(path, simple=True, separator="/")


def target_tree(model_cfg) -> tuple[dict, dict]:
    """Our model's ``(params, rest)`` pure dicts of ``jax.ShapeDtypeStruct`` (no memory allocated)."""
    abstract = nnx.eval_shape(lambda: build_model(model_cfg, rngs=nnx.Rngs(0)))
    _, params, rest = nnx.split(abstract, nnx.Param, ...)
    return nnx.to_pure_dict(params), nnx.to_pure_dict(rest)


def _squeeze_to(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` reshaped to ``shape`` when the two differ only by singleton axes, else unchanged."""
    if value.shape != shape and [d for d in value.shape if d != 1] == [d for d in shape if d != 1]:
        return value.reshape(shape)
    return value


def linear(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """torch Linear ``weight [out, in]`` -> Flax ``kernel [in, out]``."""
    return value.T if value.ndim == 2 else value


def depthwise(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """torch depthwise Conv1d ``weight [E, 1, K]`` -> our ``CausalConv1d.weight [K, E]``."""
    return value[:, 0, :].T if value.ndim == 3 and value.shape[1] == 1 else value


def identity(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """torch layout kept (up to singleton axes)."""
    return _squeeze_to(value, shape)


def default_transform(our_path: str, shape: tuple[int, ...]) -> Transform:
    """The layout rule for one of our leaves (see the module docstring)."""
    leaf = our_path.rsplit("/", 1)[-1]
    parent = our_path.rsplit("/", 2)[-2] if our_path.count("/") else ""
    if leaf == "kernel":
        return linear
    if leaf == "weight" and parent.startswith("conv1d") and len(shape) == 2:
        return depthwise
    return identity


class StateDictMapper:
    """Fills our ``(params, rest)`` tree from ``state_dict`` one leaf at a time, tracking consumed keys.

    ``state_dict`` maps original key names to numpy arrays; ``source`` names where it came from (a file) for
    error messages. Use ``take`` for each of our leaves (or ``take_all`` with a path -> key function), then
    ``finish``; ``ignore`` marks original keys that are known to have no counterpart (e.g. unused buffers).
    """

    def __init__(self, state_dict: dict[str, np.ndarray], model_cfg, *, source: str = "state_dict"):
        self.state_dict = state_dict
        self.source = source
        self.model_name = model_cfg.get("name")
        params, rest = target_tree(model_cfg)
        self._templates = {"params": params, "rest": rest}
        self.targets: dict[str, jax.ShapeDtypeStruct] = {}
        for kind, tree in self._templates.items():
            for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
                self.targets[f"{kind}/{path_str(p)}"] = leaf
        self.values: dict[str, np.ndarray] = {}
        self.consumed: set[str] = set()
        self.problems: list[str] = []
        self._attempted: set[str] = set()  # our leaves a key was tried for (filled, or its problem recorded)

    def our_paths(self) -> list[str]:
        """Every leaf of our tree, ``params/...`` or ``rest/...``, in tree order."""
        return list(self.targets)

    def take(self, key: str, our_path: str, transform: Transform | None = None) -> None:
        """Assigns original ``key`` (after ``transform``, default ``default_transform``) to ``our_path``."""
        if our_path not in self.targets:
            raise KeyError(f"{our_path!r} is not a leaf of model {self.model_name!r}")
        want = tuple(self.targets[our_path].shape)
        self._attempted.add(our_path)
        if key not in self.state_dict:
            self.problems.append(f"missing key {key!r} (for {our_path}, expected shape {want})")
            return
        self.consumed.add(key)
        value = np.asarray(self.state_dict[key])
        fn = transform or default_transform(our_path, want)
        got = fn(value, want)
        if tuple(got.shape) != want:
            self.problems.append(f"key {key!r}: shape {tuple(value.shape)} does not fit {our_path} "
                                 f"(expected {want} after {fn.__name__}, got {tuple(got.shape)})")
            return
        self.values[our_path] = np.asarray(got, dtype=self.targets[our_path].dtype)

    def take_all(self, key_of: Callable[[str], str | None], paths: Iterable[str] | None = None) -> None:
        """``take(key_of(p), p)`` for every one of our leaves ``p`` not yet filled (``None``: skip it)."""
        for p in list(paths if paths is not None else self.targets):
            if p in self.values:
                continue
            key = key_of(p)
            if key is not None:
                self.take(key, p)

    def ignore(self, keys: Iterable[str]) -> None:
        """Marks original ``keys`` as deliberately unused (present or not)."""
        self.consumed.update(keys)

    def finish(self) -> tuple[dict, dict]:
        """``(params, rest)`` as numpy pure dicts; raises ``ConversionError`` listing every problem."""
        problems = list(self.problems)
        problems += [f"unexpected key {k!r} {tuple(np.shape(self.state_dict[k]))}: nothing in our model takes it"
                     for k in self.state_dict if k not in self.consumed]
        problems += [f"our {p} {tuple(t.shape)} received no key" for p, t in self.targets.items()
                     if p not in self._attempted]
        if problems:
            raise ConversionError(f"{self.source} does not fit model {self.model_name!r} "
                                  f"({len(problems)} problem{'s' if len(problems) > 1 else ''}):\n  "
                                  + "\n  ".join(problems))
        out = []
        for kind, tree in self._templates.items():
            leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
            out.append(jax.tree_util.tree_unflatten(
                treedef, [self.values[f"{kind}/{path_str(p)}"] for p, _ in leaves]))
        return out[0], out[1]


def strip_prefix(state_dict: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """``state_dict`` with ``prefix`` removed from the keys, when every key carries it (Lightning's
    ``audio_model.``, DDP's ``module.``); unchanged otherwise."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def torch_key(our_path: str) -> str:
    """The PyTorch key spelled like our path: ``params/a/0/kernel`` -> ``a.0.weight`` (our modules keep the
    original attribute names, so most leaves need nothing more)."""
    kind, rest = our_path.split("/", 1)
    parts = rest.split("/")
    if parts[-1] == "kernel":
        parts[-1] = "weight"
    return ".".join(parts)
