"""Which fields of a config the code reads: ``recorded_reads(config)`` records every leaf read through
ml_collections (attribute or item access, ``get``, ``dict(cfg)``) while its block runs.

Serialising the whole config (``to_dict``/``to_json``/``repr``/comparisons, as the checkpoint and the resume
check do) is not a read. Fields tied by a ``FieldReference`` (``model.dtype`` and ``train.precision``) are one
field: reading either reads both.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import ml_collections
from ml_collections.config_dict import ConfigDict, FieldReference

_NOT_READS = ("to_dict", "to_json", "to_json_best_effort", "__repr__", "__str__", "__eq__", "eq_as_configdict",
              "copy_and_resolve_references", "__deepcopy__", "__getstate__")


def leaves(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, object]:
    """``{"a.b": raw field}`` for every non-ConfigDict field (``FieldReference`` objects kept as they are)."""
    out = {}
    for k, v in config._fields.items():
        value = v.get() if isinstance(v, FieldReference) else v
        if isinstance(value, ConfigDict):
            out.update(leaves(value, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _prefixes(config: ConfigDict, prefix: str = "") -> dict[int, str]:
    out = {id(config): prefix}
    for k, v in config._fields.items():
        value = v.get() if isinstance(v, FieldReference) else v
        if isinstance(value, ConfigDict):
            out.update(_prefixes(value, f"{prefix}{k}."))
    return out


@contextlib.contextmanager
def recorded_reads(config: ml_collections.ConfigDict):
    """Yields a set that collects the dotted paths of the leaves of ``config`` read inside the block."""
    prefixes = _prefixes(config)
    fields = leaves(config)
    aliases: dict[int, list[str]] = {}
    for path, raw in fields.items():
        if isinstance(raw, FieldReference):
            aliases.setdefault(id(raw), []).append(path)
    read: set[str] = set()
    quiet = threading.local()
    getitem = ConfigDict.__getitem__

    def recording_getitem(self, key):
        prefix = prefixes.get(id(self))
        if prefix is not None and not getattr(quiet, "depth", 0) and isinstance(key, str) and "." not in key:
            path = prefix + key
            if path in fields:
                raw = fields[path]
                read.update(aliases.get(id(raw), [path]) if isinstance(raw, FieldReference) else [path])
        return getitem(self, key)

    def not_a_read(method):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            quiet.depth = getattr(quiet, "depth", 0) + 1
            try:
                return method(*args, **kwargs)
            finally:
                quiet.depth -= 1

        return wrapper

    saved = {name: ConfigDict.__dict__[name] for name in _NOT_READS if name in ConfigDict.__dict__}
    ConfigDict.__getitem__ = recording_getitem
    for name, method in saved.items():
        setattr(ConfigDict, name, not_a_read(method))
    try:
        yield read
    finally:
        ConfigDict.__getitem__ = getitem
        for name, method in saved.items():
            setattr(ConfigDict, name, method)
