"""Small files written by real ``torch.save`` for the tests of ``mamba_jax.convert.torch_zip`` (a few KB).

Run once with the PyTorch environment: ``/work/torchenv/bin/python tools/golden/make_torch_zip_fixtures.py``.
Values are simple closed forms of ``arange`` so the tests can recompute them with numpy:

* ``plain.pth``: a state_dict (OrderedDict) with float32 (a Parameter), float16, bfloat16, int64, bool,
  a 0-d tensor, a transposed (non-contiguous) view and a view at a storage offset sharing one storage;
* ``lightning.ckpt``: ``{"state_dict": {"audio_model.<k>": ...}, "epoch": 3, "global_step": 7, "infos":
  {torch.__version__, torch.device("cuda", 1), torch.bfloat16, torch.Size([2, 3])}}`` (plain torch values
  that real checkpoints carry, e.g. look2hear's best_model.pth stores torch.__version__);
* ``legacy.pth``: the pre-1.6 non-zip pickle format (must be refused with a clear message);
* ``evil.pth``: a zip checkpoint whose pickle calls ``os.system`` (must be refused, never run).
"""

from __future__ import annotations

import collections
import os
import pathlib

import torch

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "convert" / "fixtures"


class Evil:
    def __reduce__(self):
        return os.system, ("echo this must never run",)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8  # one storage, two views below
    sd = collections.OrderedDict(
        weight=torch.nn.Parameter(torch.arange(12, dtype=torch.float32).reshape(3, 4) / 7 - 0.5),
        half=(torch.arange(6, dtype=torch.float32) / 4).to(torch.float16),
        bf16=(torch.arange(5, dtype=torch.float32) - 2).to(torch.bfloat16),
        steps=torch.arange(4, dtype=torch.int64) * 1000,
        mask=torch.arange(5) % 2 == 0,
        scalar=torch.tensor(2.5),
        transposed=base.t(),
        offset=base[1:3, 2:5],
    )
    torch.save(sd, OUT / "plain.pth")
    torch.save({"state_dict": collections.OrderedDict((f"audio_model.{k}", v) for k, v in list(sd.items())[:2]),
                "epoch": 3, "global_step": 7,
                "infos": {"torch_version": torch.__version__, "device": torch.device("cuda", 1),
                          "dtype": torch.bfloat16, "size": torch.Size([2, 3])}}, OUT / "lightning.ckpt")
    torch.save(collections.OrderedDict(weight=sd["weight"].detach()), OUT / "legacy.pth",
               _use_new_zipfile_serialization=False)
    torch.save({"weight": torch.zeros(2), "payload": Evil()}, OUT / "evil.pth")
    print(f"torch {torch.__version__}: wrote", sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
