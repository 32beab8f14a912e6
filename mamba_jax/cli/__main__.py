"""``python -m mamba_jax.cli``: the ``mamba-jax`` command."""

import sys

from mamba_jax.cli import main

sys.exit(main())
