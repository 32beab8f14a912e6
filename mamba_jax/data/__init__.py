"""Data: corpora on disk, dynamic mixing and grain pipelines.

Modules (import the one you need; nothing heavy is imported here):

* ``config``: ``data_config(**overrides)``, the locked ``config.data`` block.
* ``pipeline``: ``separation_dataset``, ``asr_dataset`` (grain ``IterDataset`` of padded batches),
  ``steps_per_epoch``.
* ``synthetic``: ``ensure_corpus()``, the embedded espeak-ng corpus in the real layouts.
* ``wsj0``, ``libri``: random-access sources over wsj0-2mix, raw WSJ0, LibriSpeech and LibriMix.
* ``mixing``: P.56 active level, the SpeechBrain and SepMamba dynamic-mixing recipes, speed
  perturbation. ``audio``: soundfile I/O with named errors. ``tts``, ``text``: the synthesizer
  driver and the embedded sentence source.
"""
