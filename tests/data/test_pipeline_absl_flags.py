"""The grain worker pipeline leaves the program's absl flags as it found them (issue 34: no global side effects)."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = '''
import sys
from absl import flags
from mamba_jax.data.config import data_config
from mamba_jax.data.pipeline import separation_dataset

MINE = flags.DEFINE_string("mine", "x", "a flag of the program that uses the pipeline")

if __name__ == "__main__":  # grain's worker processes re-import __main__
    it = iter(separation_dataset(data_config(root=sys.argv[1], num_workers=1), "valid", batch_size=2, seed=0))
    try:
        print(len(next(it)["lengths"]))
    finally:
        it.close()
    print("parsed" if flags.FLAGS.is_parsed() else "unparsed")
    try:
        print(MINE.value)
    except flags.UnparsedFlagAccessError:
        print("UnparsedFlagAccessError")
'''


def test_worker_pipeline_leaves_absl_flags_unparsed(tiny_corpus, tmp_path):
    """A real process with grain workers (``num_workers=1``) gets its batch, and afterwards its own flags are
    still unparsed: reading one raises, as before the pipeline (absl's ``mark_as_parsed`` would make it read
    the default silently)."""
    script = tmp_path / "uses_pipeline.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(tiny_corpus)], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["2", "unparsed", "UnparsedFlagAccessError"]
