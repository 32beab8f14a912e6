"""A weights-only reader of torch's zip checkpoint format (``torch.save`` since 1.6), without torch.

Layout of such a file: a zip archive with one top folder ``<archive>/`` holding ``data.pkl`` (the pickled
object), ``data/<n>`` (raw little-endian bytes of storage ``n``) and ``byteorder``. Tensors appear in the
pickle as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` where ``storage`` is a
persistent id ``("storage", torch.<Dtype>Storage, "<n>", location, numel)``.

The unpickler is restricted: it resolves only torch's tensor/parameter rebuild functions, the storage
types, ``collections.OrderedDict`` and a few plain values (``torch.__version__``, ``torch.device``,
``torch.Size``, dtypes), returned as str, str, tuple and numpy dtype. Any other global (a class, ``os.system``, ...) is refused with an
error that names the file and the global, so reading a checkpoint never runs code from it.
"""

from __future__ import annotations

import collections
import pathlib
import pickle
import zipfile

import ml_dtypes
import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The pickle asks for a global outside the allow-list."""


class _StorageType:
    """Stands for ``torch.<Dtype>Storage`` inside the pickle: only its dtype matters."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage: np.ndarray, offset: int, size, stride, *_unused) -> np.ndarray:
    """A copy of the strided view ``storage[offset:]`` with ``size``/``stride`` (in elements)."""
    size, stride = tuple(size), tuple(stride)
    if not size:
        return storage[offset:offset + 1].reshape(()).copy()
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=tuple(s * itemsize for s in stride), writeable=False)
    return np.array(view)


def _rebuild_tensor_v3(storage: np.ndarray, offset: int, size, stride, requires_grad, hooks, dtype,
                       *_unused) -> np.ndarray:
    return _rebuild_tensor(storage, offset, size, stride)


def _rebuild_parameter(data: np.ndarray, *_unused) -> np.ndarray:
    return data


def _device(*args) -> str:
    """``torch.device("cuda", 0)`` -> ``"cuda:0"``."""
    return ":".join(str(a) for a in args)


_TORCH_DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16,
                 "int64": np.int64, "int32": np.int32, "int16": np.int16, "int8": np.int8, "uint8": np.uint8,
                 "bool": np.bool_}

_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    # Plain values that checkpoints carry next to the weights (e.g. look2hear's best_model.pth stores
    # torch.__version__, a TorchVersion str subclass; optimiser states and hparams hold devices, dtypes, sizes).
    ("torch.torch_version", "TorchVersion"): str,
    ("torch", "device"): _device,
    ("torch", "Size"): tuple,
    **{("torch", name): np.dtype(dt) for name, dt in _TORCH_DTYPES.items()},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: pathlib.Path, big_endian: bool):
        super().__init__(file)
        self.archive, self.prefix, self.path, self.big_endian = archive, prefix, path, big_endian
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeCheckpointError(
            f"{self.path}: refusing to load global {module}.{name} (a weights-only reader allows only torch "
            f"tensors, storages, OrderedDict and a few plain torch values; re-save the state_dict alone)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise UnsafeCheckpointError(f"{self.path}: unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if key not in self.storages:
            raw = self.archive.read(f"{self.prefix}data/{key}")
            dtype = storage_type.dtype.newbyteorder(">") if self.big_endian else storage_type.dtype
            arr = np.frombuffer(raw, dtype=dtype)
            if arr.size != numel:
                raise ValueError(f"{self.path}: storage {key} holds {arr.size} elements, the pickle says {numel}")
            self.storages[key] = arr.astype(storage_type.dtype, copy=False)
        return self.storages[key]


def load(path: str | pathlib.Path):
    """The object ``torch.save`` wrote to ``path``, with every tensor as a numpy array (weights only)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"torch checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a torch zip checkpoint (a legacy pre-1.6 pickle, or not written by "
                         f"torch.save); re-save it with a recent torch: torch.save(torch.load(f), f)")
    with zipfile.ZipFile(path) as archive:
        pkl = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise ValueError(f"{path}: zip file without exactly one <archive>/data.pkl; not a torch checkpoint")
        prefix = pkl[0][: -len("data.pkl")]
        byteorder = f"{prefix}byteorder"
        big = byteorder in archive.namelist() and archive.read(byteorder).strip() == b"big"
        with archive.open(pkl[0]) as f:
            return _Unpickler(f, archive, prefix, path, big).load()
