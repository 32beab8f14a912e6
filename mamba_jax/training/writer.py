"""Metric output: ``<workdir>/metrics.jsonl`` (one JSON object per logged step) and TensorBoard events."""

from __future__ import annotations

import json
import math
import os
import pathlib

import jax


def _step_of(line: str) -> int | None:
    """The step of a metrics.jsonl row; None for a blank or cut-off one (a kill -9 mid-write)."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


class MetricWriter:
    """Writes on process 0 only. ``start(step)`` before the first ``write``: the files then read as one
    uninterrupted run from step 0 (rows and events past ``step`` that a killed run left are dropped; none at all
    without a checkpoint), and a resumed run appends to them."""

    def __init__(self, workdir: str | pathlib.Path, *, tensorboard: bool = True):
        self.enabled = jax.process_index() == 0
        self.path = pathlib.Path(workdir) / "metrics.jsonl"
        self.tb_dir = pathlib.Path(workdir) / "tensorboard"
        self._tensorboard = tensorboard
        self._tb = None

    def start(self, step: int) -> None:
        """Rewinds the files to ``step`` (0: a run without a checkpoint; its predecessor's rows and event files
        are removed) and opens the TensorBoard writer."""
        if not self.enabled:
            return
        self.truncate_after(step)
        if step == 0 and self.tb_dir.is_dir():
            for f in self.tb_dir.glob("events.out.tfevents.*"):
                f.unlink()
        if self._tensorboard:
            from tensorboardX import SummaryWriter

            # purge_step: TensorBoard hides the events of steps >= it written by earlier files of the run
            self._tb = SummaryWriter(str(self.tb_dir), purge_step=step + 1 if step else None)

    def truncate_after(self, step: int) -> None:
        """Drops records past ``step`` (written by a run killed after its last checkpoint), so a resumed run's
        file reads as one uninterrupted run."""
        if not self.enabled or not self.path.exists():
            return
        if step == 0:
            self.path.unlink()
            return
        kept = [ln for ln in self.path.read_text().splitlines() if _step_of(ln) is not None and _step_of(ln) <= step]
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(ln + "\n" for ln in kept))
        os.replace(tmp, self.path)  # atomic: a kill here leaves the old or the new file, never a partial one

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        record = {"step": int(step)}
        for k, v in metrics.items():
            v = float(v)
            record[k] = v if math.isfinite(v) else str(v)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k, float(v), int(step))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
