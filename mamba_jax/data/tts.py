"""Offline speech synthesis through the pip-only ``espeakng-loader`` wheel (libespeak-ng via ctypes).

The wheel ships ``libespeak-ng.so`` 1.52 and its data (the English voice variants ``+m1..m8``,
``+f1..f5``, ``+klatt..`` and named ones) but no binary, so this module drives the C API directly:
``espeak_Initialize`` in synchronous mode, a synthesis callback that collects 16-bit samples,
``espeak_SetVoiceByName("en-us+m3")`` and ``espeak_SetParameter`` for rate/pitch/range.

The library holds global state, so one :class:`Espeak` per process (``Espeak.get()``); it is not
thread-safe. Output is ``float32 [T]`` at the engine rate (22 050 Hz).
"""

from __future__ import annotations

import ctypes
import pathlib
import threading

import numpy as np

__all__ = ["Espeak", "EspeakUnavailable"]

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)


class EspeakUnavailable(RuntimeError):
    """The espeakng-loader wheel is missing or its library failed to initialise."""


class Espeak:
    """ctypes driver for libespeak-ng; ``synth(text, voice, rate, pitch, range) -> float32 [T]``."""

    _instance: "Espeak | None" = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:  # pragma: no cover - dependency is declared in pyproject
            raise EspeakUnavailable("the synthetic corpus needs the 'espeakng-loader' wheel: "
                                    "pip install espeakng-loader") from e
        lib_path = espeakng_loader.get_library_path()
        data_path = pathlib.Path(espeakng_loader.get_data_path())
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as e:
            raise EspeakUnavailable(f"cannot load {lib_path}: {e}") from e
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                     str(data_path.parent).encode(), 0)
        if rate <= 0:
            rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_path).encode(), 0)
        if rate <= 0:
            raise EspeakUnavailable(f"espeak_Initialize failed ({rate}) with data at {data_path}")
        self.sample_rate = int(rate)
        self._lib = lib
        self._chunks: list[np.ndarray] = []

        def _collect(wav, n, _events):  # called from inside espeak_Synth, same thread
            if wav and n > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._cb = _CALLBACK(_collect)  # keep a reference: the library stores the pointer
        lib.espeak_SetSynthCallback(self._cb)

    @classmethod
    def get(cls) -> "Espeak":
        """The per-process instance (created on first use)."""
        with cls._lock:
            if cls._instance is None:
                cls._instance = Espeak()
            return cls._instance

    def synth(self, text: str, voice: str = "en-us", *, rate: int = 175, pitch: int = 50,
              pitch_range: int = 50) -> np.ndarray:
        """Speak ``text`` with ``voice`` (``lang+variant``); returns ``float32 [T]`` at 22 050 Hz.

        ``rate`` is words per minute (80..450), ``pitch`` and ``pitch_range`` are 0..99.
        """
        with self._lock:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng does not know voice {voice!r}")
            for name, value in (("rate", rate), ("pitch", pitch), ("range", pitch_range)):
                self._lib.espeak_SetParameter(_PARAM[name], int(value), 0)
            self._chunks = []
            data = text.encode("utf-8")
            err = self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                         None, None)
            self._lib.espeak_Synchronize()
            if err != 0:
                raise RuntimeError(f"espeak_Synth failed ({err}) for {text!r}")
            chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, np.float32)
        return (np.concatenate(chunks).astype(np.float32) / 32768.0)
