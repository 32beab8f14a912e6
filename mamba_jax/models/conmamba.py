"""ConMamba ASR: Conformer-style encoder with a bidirectional Mamba in place of self-attention.

Jiang, Li, Mesgarani, "Speech Slytherin: Examining the Performance and Efficiency of Mamba for Speech
Separation, Recognition, and Synthesis", arXiv 2407.09732; code xi-j/Mamba-ASR (docs/conmamba.md).

One module serves the three model families through ``ConMambaConfig.decoder``:

* ``"transformer"``: ConMamba encoder + Transformer decoder (conmamba_small / conmamba_large);
* ``"mamba"``: ConMamba encoder + Mamba decoder (conmambamamba_small / conmambamamba_large);
* ``"none"``: CTC-only (conmamba_ctc_large): no embedding, decoder or ``seq_lin``.

Pipeline for fbank features normalised by ``model.normalize`` (SpeechBrain's global InputNormalization,
held by the model so its statistics travel with the weights) ``feats [B, L, 80]``::

    x   = ConvFrontEnd(feats)                 # [B, L', 640], L' = ceil(ceil(L/2)/2)
    x   = dropout(Linear(640, D)(x))          # custom_src_module
    x   = ConmambaEncoder(x)                  # no positional encoding
    ctc = log_softmax(ctc_lin(x))             # [B, L', V]
    t   = Embed(tokens_in)·sqrt(D) + PE       # tokens_in starts with bos
    att = log_softmax(seq_lin(decoder(t, x))) # [B, U, V]

ConmambaEncoderLayer (docs/conmamba.md): ``x += ½ FFN1(x)``; ``x += BiMambaV2(norm1(x))``;
``x += ConvModule(x)``; ``x = norm2(x + ½ FFN2(x))``; GELU everywhere, LayerNorm eps 1e-5, the encoder's final
LayerNorm eps 1e-6.

Padding (``ConMambaConfig.inert_padding``). With ``True`` (default) right padding never changes a valid output:
``encode(feats, feat_lengths)`` gives every row the first ``ceil(ceil(len/2)/2)`` frames that the unpadded
row would get, whatever the padding holds: the CNN reflects at each row's true end, each BiMambaV2 reverses
every row within its length (``ops.padding.reverse_padded``), and the convolution module's depthwise conv
sees zeros past it. The decoders mask padded memory (the Transformer's cross-attention keys; the Mamba
decoder's search state is taken at the last valid frame). With ``False`` the encoder computes what the original
computes on a padded batch: xi-j/Mamba-ASR trains on padded batches (SpeechBrain: relative lengths, used for
the normalisation statistics, the decoder's memory mask and the CTC loss) but its encoder ignores them
(``conv_mask`` is forced to None, the BiMamba flips the whole padded sequence), so its outputs on a padded row
depend on the padding. Use ``False`` for exact parity with the original on padded batches (the golden tests)
or with its batched training; a row without padding is computed identically either way.

Sizes (docs/conmamba.md, "computed" = instantiating the original; reproduced exactly by ``param_count``):

| config              | D   | enc | dec           | heads | d_ffn | vocab | params      |
|---------------------|-----|-----|---------------|-------|-------|-------|-------------|
| conmamba_large      | 512 | 12  | 6 Transformer | 8     | 2048  | 5000  | 115,187,888 |
| conmambamamba_large | 512 | 12  | 6 Mamba       | -     | 2048  | 5000  | 122,917,040 |
| conmamba_small      | 144 | 12  | 4 Transformer | 4     | 1024  | 5000  | 14,075,520  |
| conmambamamba_small | 144 | 12  | 4 Mamba       | -     | 1024  | 5000  | 14,570,880  |
| conmamba_ctc_large  | 256 | 18  | none          | -     | 1024  | 31    | 31,555,519  |

Initialisation (``init``): ``"xavier"`` (default, fidelity) reproduces ``TransformerASR._init_params``:
xavier_normal_ on every parameter with >= 2 dims inside the Transformer (src projection, encoder, decoder,
embedding), with torch's fan convention, **including A_log / A_b_log, conv1d, x_proj, dt_proj.weight** of
every Mamba (docs/conmamba.md), so A ≈ -1 everywhere. ``"mamba"`` applies the same xavier pass to everything
except the Mamba mixers, which keep their own init (S4D-real A, dt inverse-softplus bias, ...). The CNN
front-end and the two heads keep the torch default init in both modes, as in the original.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mamba_jax.layers.attention import MultiheadAttention, sinusoidal_positions
from mamba_jax.layers.cnn_frontend import ConvFrontEnd
from mamba_jax.layers.conv import DepthwiseConv1d
from mamba_jax.layers.fbank import FbankConfig, fbank, num_frames
from mamba_jax.layers.init import torch_default
from mamba_jax.layers.mamba import BiMambaV2, Mamba, MambaConfig
from mamba_jax.layers.norm import LayerNorm
from mamba_jax.layers.normalization import InputNormalization
from mamba_jax.layers.precision import compute_dtype
from mamba_jax.layers.transformer import FeedForward, MambaDecoder, TransformerDecoder, gelu
from mamba_jax.models import config_from
from mamba_jax.ops.padding import mask_padding
from mamba_jax.ops.selective_scan import Impl
from mamba_jax.typing import Array, Float, Int

TASK = "asr"

DecoderKind = Literal["transformer", "mamba", "none"]


@dataclasses.dataclass(frozen=True)
class ConMambaConfig:
    """Hyperparameters (defaults: conmamba_large, docs/conmamba.md)."""

    d_model: int = 512
    num_encoder_layers: int = 12
    num_decoder_layers: int = 6
    num_heads: int = 8
    d_ffn: int = 2048
    vocab_size: int = 5000
    decoder: DecoderKind = "transformer"
    n_mels: int = 80
    cnn_channels: tuple[int, ...] = (64, 32)
    conv_kernel_size: int = 31
    dropout: float = 0.1
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    max_len: int = 2500  # rows of the decoder's sinusoidal table (positional_encoding_decoder.pe)
    init: Literal["xavier", "mamba"] = "xavier"
    scan_impl: Impl = "auto"
    dtype: str = "fp32"  # matmul compute dtype: 'fp32' | 'bf16' (params, norms, scans, log-softmax stay fp32)
    norm_update_until_epoch: int = 4  # InputNormalization(global): running stats updated while epoch < this
    inert_padding: bool = True  # padding never changes a valid output; False: the original's padded computation

    @property
    def mamba(self) -> MambaConfig:
        return MambaConfig(d_model=self.d_model, d_state=self.d_state, d_conv=self.d_conv, expand=self.expand)


class ConvolutionModule(nnx.Module):
    """LN -> pointwise Conv1d(D, 2D) -> GLU -> depthwise Conv1d(k, pad k//2) -> LN -> GELU -> Linear -> Dropout.

    The pointwise conv is a Linear (torch ``bottleneck.0.weight [2D, D, 1]`` -> ``kernel [D, 2D]``).
    """

    def __init__(self, d: int, kernel_size: int, *, dropout: float, dtype, rngs: nnx.Rngs):
        self.layer_norm = LayerNorm(d)
        self.bottleneck = nnx.Linear(d, 2 * d, kernel_init=torch_default(d), bias_init=torch_default(d),
                                     dtype=dtype, rngs=rngs)
        self.conv = DepthwiseConv1d(d, kernel_size, padding=(kernel_size // 2, kernel_size // 2), rngs=rngs)
        self.after_norm = LayerNorm(d)
        self.after_linear = nnx.Linear(d, d, kernel_init=torch_default(d), bias_init=torch_default(d), dtype=dtype,
                                       rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x: Float[Array, "B L D"], lengths: Int[Array, "B"] | None = None) -> Float[Array, "B L D"]:
        """``lengths``: the depthwise conv sees zeros past each row's length (its own zero padding), so the valid
        outputs equal the unpadded call's; None: the padded row is convolved as it is (the original)."""
        h = self.bottleneck(self.layer_norm(x))  # [B, L, 2D]
        d = x.shape[-1]
        h = h[..., :d] * jax.nn.sigmoid(h[..., d:])  # GLU over channels
        h = self.conv(mask_padding(h, lengths))
        return self.dropout(self.after_linear(gelu(self.after_norm(h))))


class MacaronFFN(nnx.Module):
    """LN -> FeedForward -> Dropout (``ffn_module{1,2}``)."""

    def __init__(self, d: int, d_ffn: int, *, dropout: float, dtype, rngs: nnx.Rngs):
        self.norm = LayerNorm(d)
        self.ffn = FeedForward(d, d_ffn, dropout=dropout, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x):
        return self.dropout(self.ffn(self.norm(x)))


class ConmambaEncoderLayer(nnx.Module):
    def __init__(self, cfg: ConMambaConfig, *, dtype, rngs: nnx.Rngs):
        d = cfg.d_model
        self.ffn_module1 = MacaronFFN(d, cfg.d_ffn, dropout=cfg.dropout, dtype=dtype, rngs=rngs)
        self.mamba = BiMambaV2(cfg.mamba, dtype=dtype, scan_impl=cfg.scan_impl, rngs=rngs)
        self.convolution_module = ConvolutionModule(d, cfg.conv_kernel_size, dropout=cfg.dropout, dtype=dtype,
                                                    rngs=rngs)
        self.ffn_module2 = MacaronFFN(d, cfg.d_ffn, dropout=cfg.dropout, dtype=dtype, rngs=rngs)
        self.norm1 = LayerNorm(d)
        self.norm2 = LayerNorm(d)

    def __call__(self, x: Float[Array, "B L D"], lengths: Int[Array, "B"] | None = None) -> Float[Array, "B L D"]:
        """``lengths``: valid frames per row, padding made inert (None: the original's padded computation)."""
        x = x + 0.5 * self.ffn_module1(x)
        x = x + self.mamba(self.norm1(x), lengths)  # no dropout on this branch
        x = x + self.convolution_module(x, lengths)
        return self.norm2(x + 0.5 * self.ffn_module2(x))


class ConMambaASR(nnx.Module):
    """``model(feats [B, L, F], feat_lengths [B], tokens_in [B, U]) -> dict`` (see ``__call__``)."""

    def __init__(self, cfg: ConMambaConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        dtype = compute_dtype(cfg.dtype)
        d = cfg.d_model
        self.CNN = ConvFrontEnd(cfg.n_mels, cfg.cnn_channels, dropout=cfg.dropout, dtype=dtype, rngs=rngs)
        self.custom_src_module = nnx.Linear(self.CNN.out_dim, d, kernel_init=torch_default(self.CNN.out_dim),
                                            bias_init=torch_default(self.CNN.out_dim), dtype=dtype, rngs=rngs)
        self.src_dropout = nnx.Dropout(cfg.dropout, rngs=rngs)
        self.encoder_layers = nnx.List([ConmambaEncoderLayer(cfg, dtype=dtype, rngs=rngs)
                                        for _ in range(cfg.num_encoder_layers)])
        self.encoder_norm = LayerNorm(d, eps=1e-6)
        if cfg.decoder == "none":
            self.embedding = self.decoder = self.seq_lin = None
        else:
            self.embedding = nnx.Embed(cfg.vocab_size, d, embedding_init=nnx.initializers.normal(1.0), rngs=rngs)
            if cfg.decoder == "transformer":
                self.decoder = TransformerDecoder(cfg.num_decoder_layers, d, cfg.num_heads, cfg.d_ffn,
                                                  dropout=cfg.dropout, dtype=dtype, rngs=rngs)
            elif cfg.decoder == "mamba":
                self.decoder = MambaDecoder(cfg.num_decoder_layers, cfg.mamba, cfg.d_ffn, dropout=cfg.dropout,
                                            dtype=dtype, scan_impl=cfg.scan_impl, rngs=rngs)
            else:
                raise ValueError(f"decoder must be 'transformer', 'mamba' or 'none', got {cfg.decoder!r}")
            self.seq_lin = nnx.Linear(d, cfg.vocab_size, kernel_init=torch_default(d), bias_init=torch_default(d),
                                      dtype=dtype, rngs=rngs)
        self.ctc_lin = nnx.Linear(d, cfg.vocab_size, kernel_init=torch_default(d), bias_init=torch_default(d),
                                  dtype=dtype, rngs=rngs)
        self.pe = nnx.Variable(jnp.asarray(sinusoidal_positions(cfg.max_len, d)))  # buffer, not a Param
        # SpeechBrain's separate ``normalizer`` module (its normalizer.ckpt); statistics are nnx.BatchStat, so
        # they live in the checkpoint's ``rest`` next to the weights. ``__call__`` takes already normalised
        # features: ``normalize`` is applied by the task / Transcriber.
        self.normalizer = InputNormalization(cfg.n_mels, update_until_epoch=cfg.norm_update_until_epoch)
        if cfg.init not in ("xavier", "mamba"):
            raise ValueError(f"init must be 'xavier' or 'mamba', got {cfg.init!r}")
        _xavier_normal_transformer(self, rngs.params(), skip_mamba=cfg.init == "mamba")

    def normalize(self, feats: Float[Array, "B L F"], feat_lengths: Int[Array, "B"], *,
                  epoch: int | jax.Array = 0, train: bool = False) -> Float[Array, "B L F"]:
        """Global mean/std normalisation of fbank features (updates the running statistics when ``train``)."""
        return self.normalizer(feats, feat_lengths, epoch=epoch, train=train)

    def features(self, wave: Float[Array, "B T"], wave_lengths: Int[Array, "B"], fbank_cfg: FbankConfig, *,
                 epoch: int | jax.Array = 0, train: bool = False) -> tuple[Float[Array, "B L F"], Int[Array, "B"]]:
        """The model's input from right-padded waveforms: Fbank (``fbank_cfg``, the config's ``features``), then
        ``normalize``; returns the features and their valid frame counts. Training and inference both call it.
        With ``cfg.inert_padding`` the padding never reaches a valid frame."""
        feats = fbank(wave, fbank_cfg, wave_lengths if self.cfg.inert_padding else None)  # [B, L, F]
        lengths = jnp.minimum(num_frames(wave_lengths, fbank_cfg), feats.shape[1]).astype(jnp.int32)
        return self.normalize(feats, lengths, epoch=epoch, train=train), lengths

    # ---- encoder --------------------------------------------------------------------------------------------
    def encode(self, feats: Float[Array, "B L F"], feat_lengths: Int[Array, "B"]
               ) -> tuple[Float[Array, "B L4 D"], Int[Array, "B"]]:
        """Encoder output (memory) and its valid lengths ``ceil(ceil(len/2)/2)``. With ``cfg.inert_padding`` the
        valid frames of each row do not depend on its padding (module docstring)."""
        inert = self.cfg.inert_padding
        enc_lengths = ConvFrontEnd.output_lengths(feat_lengths, len(self.cfg.cnn_channels))
        x = self.CNN(feats, feat_lengths if inert else None)
        x = self.src_dropout(self.custom_src_module(x))
        for layer in self.encoder_layers:
            x = layer(x, enc_lengths if inert else None)
        return self.encoder_norm(x), enc_lengths

    def ctc_logprobs(self, enc: Float[Array, "B L D"]) -> Float[Array, "B L V"]:
        return jax.nn.log_softmax(self.ctc_lin(enc).astype(jnp.float32), axis=-1)

    # ---- decoder --------------------------------------------------------------------------------------------
    def embed(self, tokens: Int[Array, "B U"], start: int | jax.Array = 0) -> Float[Array, "B U D"]:
        """NormalizedEmbedding (``emb·sqrt(D)``) plus the sinusoidal position of each token (from ``start``)."""
        u = tokens.shape[1]
        pe = jax.lax.dynamic_slice_in_dim(self.pe[...], start, u, axis=0)  # [U, D]
        return self.embedding(tokens) * math.sqrt(self.cfg.d_model) + pe[None]

    def decode(self, tokens_in: Int[Array, "B U"], enc: Float[Array, "B T D"], enc_lengths: Int[Array, "B"] | None,
               *, pad_id: int | None = None) -> Float[Array, "B U V"]:
        """Full (teacher-forced) decoder log-probabilities. ``pad_id``: target keys equal to it are masked
        (training, SpeechBrain's tgt_key_padding_mask); search passes None."""
        mem_mask = None if enc_lengths is None else jnp.arange(enc.shape[1])[None] < enc_lengths[:, None]
        tgt_valid = None if pad_id is None else tokens_in != pad_id
        h = self.decoder(self.embed(tokens_in), enc, mem_mask, tgt_valid)
        return jax.nn.log_softmax(self.seq_lin(h).astype(jnp.float32), axis=-1)

    def init_decoder_state(self, enc: Float[Array, "B T D"], enc_lengths: Int[Array, "B"] | None, max_len: int
                           ) -> dict[str, Any]:
        """Incremental decoder state: KV caches (Transformer) or Mamba step states (cross-Mamba after memory: at
        each row's last valid frame with ``cfg.inert_padding``, after the padded memory as the original without)."""
        mem_mask = None if enc_lengths is None else jnp.arange(enc.shape[1])[None] < enc_lengths[:, None]
        if self.cfg.decoder == "mamba" and not self.cfg.inert_padding:
            mem_mask = None  # the original's cross-Mamba scans the padded memory
        return self.decoder.init_state(enc, mem_mask, max_len)

    def decode_step(self, token: Int[Array, "B"], state: dict[str, Any], pos: jax.Array
                    ) -> tuple[Float[Array, "B V"], dict[str, Any]]:
        """Log-probabilities of the next token after feeding ``token`` at position ``pos``."""
        x = self.embed(token[:, None], pos)[:, 0]
        h, state = self.decoder.step(x, state, pos)
        return jax.nn.log_softmax(self.seq_lin(h).astype(jnp.float32), axis=-1), state

    # ---- full model ------------------------------------------------------------------------------------------
    def __call__(self, feats: Float[Array, "B L F"], feat_lengths: Int[Array, "B"],
                 tokens_in: Int[Array, "B U"] | None = None, *, pad_id: int = 0) -> dict[str, jax.Array]:
        """Returns ``ctc_logprobs [B, L', V]``, ``enc_lengths [B]`` and, with a decoder and ``tokens_in``
        (bos-prefixed, padded with ``pad_id``), ``attn_logprobs [B, U, V]``. All log-probs are fp32."""
        enc, enc_lengths = self.encode(feats, feat_lengths)
        out = dict(ctc_logprobs=self.ctc_logprobs(enc), enc_lengths=enc_lengths)
        if self.decoder is not None and tokens_in is not None:
            out["attn_logprobs"] = self.decode(tokens_in, enc, enc_lengths, pad_id=pad_id)
        return out


def _xavier_normal_transformer(model: ConMambaASR, key: jax.Array, *, skip_mamba: bool) -> None:
    """``xavier_normal_`` (std = sqrt(2/(fan_in+fan_out)), torch fans) on every >=2-dim parameter of the
    Transformer part (not the CNN, not the heads). Torch fans: for ``[out, in, *k]``, fan_in = in·prod(k),
    fan_out = out·prod(k); each of our layouts is mapped to its torch shape below."""
    roots = [model.custom_src_module, model.encoder_layers, model.embedding, model.decoder]
    mamba_ids: set[int] = set()
    if skip_mamba:
        for root in roots:
            if root is None:
                continue
            for _, m in nnx.iter_graph(root):
                if isinstance(m, (Mamba, BiMambaV2)):
                    mamba_ids.update(id(sub) for _, sub in nnx.iter_graph(m))
    targets: list[tuple[nnx.Variable, int, int]] = []  # (param, fan_in, fan_out)
    seen: set[int] = set()
    for root in roots:
        if root is None:
            continue
        for _, m in nnx.iter_graph(root):
            if id(m) in seen or id(m) in mamba_ids:
                continue
            seen.add(id(m))
            if isinstance(m, nnx.Linear):  # kernel [in, out]  <- torch [out, in] (or pointwise conv [out, in, 1])
                targets.append((m.kernel, m.kernel.shape[0], m.kernel.shape[1]))
            elif isinstance(m, DepthwiseConv1d):  # weight [K, E]  <- torch [E, 1, K]
                k, e = m.weight.shape
                targets.append((m.weight, k, e * k))
            elif isinstance(m, (Mamba, BiMambaV2)):  # A_log [E, N], torch layout
                for name in ("A_log", "A_b_log"):
                    p = getattr(m, name, None)
                    if p is not None:
                        targets.append((p, p.shape[1], p.shape[0]))
            elif isinstance(m, MultiheadAttention):  # in_proj_weight [3D, D], torch layout
                targets.append((m.in_proj_weight, m.in_proj_weight.shape[1], m.in_proj_weight.shape[0]))
            elif isinstance(m, nnx.Embed):  # embedding [V, D], torch layout
                targets.append((m.embedding, m.embedding.shape[1], m.embedding.shape[0]))
    keys = jax.random.split(key, max(len(targets), 1))
    for k, (p, fan_in, fan_out) in zip(keys, targets):
        std = math.sqrt(2.0 / (fan_in + fan_out))
        p[...] = (std * jax.random.normal(k, p.shape, jnp.float32)).astype(p.dtype)


def build(model_cfg, *, rngs: nnx.Rngs) -> ConMambaASR:
    """Registry entry point (``mamba_jax.models.build_model``)."""
    return ConMambaASR(config_from(ConMambaConfig, model_cfg, model="conmamba"), rngs=rngs)


def param_count(model: nnx.Module) -> int:
    """Number of trainable parameters (``nnx.Param`` leaves)."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))
