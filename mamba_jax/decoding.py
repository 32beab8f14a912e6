"""ASR search: CTC greedy, CTC prefix beam search, and joint attention/CTC beam search.

Joint search (SpeechBrain ``S2STransformerBeamSearcher`` + ``CTCScorer``, docs/conmamba.md), per utterance:

    score(y_1..y_s, c) = score(y_1..y_s) + (1 - λ)·log p_att(c | y, memory) + λ·(ψ(y c) - ψ(y))

with ψ the CTC prefix log-probability (Watanabe et al. 2017) and λ the CTC weight; ``eos`` uses the full
CTC probability of the prefix. Finished hypotheses are ranked by ``score / (tokens + 1)`` when length
normalisation is on (the +1 is the eos). Blank and bos are never proposed. The search runs
``max(1, floor(T·max_decode_ratio))`` steps (T = encoder frames); hypotheses still alive then are closed
with eos.

The decoder is scored either **incrementally** (``incremental=True``: KV cache for the Transformer decoder,
Mamba step states for the Mamba decoder, cross-Mamba state after the memory computed once) or by
**full recomputation** of the whole prefix at each step, as the original does. Both give the same
hypotheses and scores (tests/inference/test_decoding.py); the first does O(1) decoder work per step apart
from reading the KV cache.

Compilation. The jitted decoder functions take the model's ``GraphDef`` (hashed by value) as their static
argument, and each utterance's memory and CTC log-probs are padded to a length bucket (16, 24, 32, 48, ...
frames, ``length_bucket``) with exact masking, so a search over many utterances compiles once per bucket,
not once per utterance.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mamba_jax.typing import Array, Float, Int

NEG_INF = -1e30


# ----------------------------------------------------------------------------------------------------- CTC only
def ctc_greedy(logprobs: Float[Array, "B L V"], lengths: Int[Array, "B"], *, blank_id: int = 0) -> list[list[int]]:
    """Best path: argmax per frame, merge repeats, drop blanks."""
    best = np.asarray(jnp.argmax(logprobs, axis=-1))
    out = []
    for b, n in enumerate(np.asarray(lengths)):
        path = best[b, :int(n)]
        out.append([int(k) for i, k in enumerate(path) if k != blank_id and (i == 0 or path[i - 1] != k)])
    return out


def ctc_prefix_beam_search(logprobs: Float[Array, "L V"], *, beam_size: int = 100, blank_id: int = 0,
                           beam_prune_logp: float = -12.0, token_prune_min_logp: float = -1.2
                           ) -> list[tuple[list[int], float]]:
    """CTC prefix beam search over one utterance's valid frames (host-side numpy).

    Per frame only tokens with ``log p > token_prune_min_logp`` extend prefixes (blank is always kept), and
    prefixes more than ``-beam_prune_logp`` below the best are dropped (SpeechBrain ``CTCBeamSearcher``
    pruning). Returns ``(tokens, log p)`` sorted best first.
    """
    lp = np.asarray(logprobs, np.float64)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -np.inf)}  # prefix -> (log p_blank, log p_nonblank)
    for t in range(lp.shape[0]):
        x = lp[t]
        cands = [int(c) for c in np.nonzero(x > token_prune_min_logp)[0] if c != blank_id]
        nxt: dict[tuple[int, ...], list[float]] = {}

        def add(prefix, pb, pnb):
            cur = nxt.setdefault(prefix, [-np.inf, -np.inf])
            cur[0], cur[1] = np.logaddexp(cur[0], pb), np.logaddexp(cur[1], pnb)

        for prefix, (pb, pnb) in beams.items():
            total = np.logaddexp(pb, pnb)
            add(prefix, total + x[blank_id], -np.inf)
            if prefix:
                add(prefix, -np.inf, pnb + x[prefix[-1]])  # repeat of the last token collapses
            for c in cands:
                ext = pb if prefix and c == prefix[-1] else total
                add(prefix + (c,), -np.inf, ext + x[c])
        scored = sorted(nxt.items(), key=lambda kv: -np.logaddexp(*kv[1]))[:beam_size]
        best = np.logaddexp(*scored[0][1])
        beams = {p: (v[0], v[1]) for p, v in scored if np.logaddexp(*v) >= best + beam_prune_logp}
    final = sorted(((list(p), float(np.logaddexp(*v))) for p, v in beams.items()), key=lambda h: -h[1])
    return final


# ------------------------------------------------------------------------------------------- CTC prefix scorer
class CTCPrefixState(NamedTuple):
    """Per hypothesis: ``r [T, N, 2]`` = log (r^n, r^b) of its prefix, ``psi [N]``, ``last [N]`` token."""

    r: jax.Array
    psi: jax.Array
    last: jax.Array


def ctc_prefix_init(x: Float[Array, "L V"], n: int, *, blank_id: int, bos_id: int) -> CTCPrefixState:
    """The empty prefix (only bos so far): r^n = -inf, r^b_t = sum_{<=t} log p(blank)."""
    rb = jnp.cumsum(x[:, blank_id])
    r = jnp.stack([jnp.full_like(rb, NEG_INF), rb], axis=-1)  # [L, 2]
    return CTCPrefixState(jnp.broadcast_to(r[:, None], (x.shape[0], n, 2)), jnp.zeros((n,)),
                          jnp.full((n,), bos_id, jnp.int32))


def ctc_prefix_score(x: Float[Array, "L V"], st: CTCPrefixState, cand: Int[Array, "W Kt"], *, blank_id: int,
                     bos_id: int) -> tuple[Float[Array, "W Kt"], Float[Array, "L W Kt 2"]]:
    """ψ(prefix + c) for candidates ``cand`` and the extended prefixes' r, by the standard recursion::

        phi_t   = r^b_t(g) if c == last(g) else r^b_t(g) ⊕ r^n_t(g)
        r^n_t(h) = (r^n_{t-1}(h) ⊕ phi_{t-1}) + x_t(c),   r^b_t(h) = (r^b_{t-1}(h) ⊕ r^n_{t-1}(h)) + x_t(blank)
        ψ(h)    = r^n_1(h) ⊕ ⊕_{t>=2} (phi_{t-1} + x_t(c)),  r^n_1(h) = x_1(c) if g is empty else -inf
    """
    xc = x[:, cand]  # [L, W, Kt]
    r_sum = jnp.logaddexp(st.r[..., 0], st.r[..., 1])  # [L, W]
    same = (cand == st.last[:, None])[None]  # [1, W, Kt]
    phi = jnp.where(same, st.r[..., 1][..., None], r_sum[..., None])  # [L, W, Kt]
    empty = (st.last == bos_id)[:, None]
    rn0 = jnp.where(empty, xc[0], NEG_INF)  # [W, Kt]
    rb0 = jnp.full_like(rn0, NEG_INF)

    def body(carry, inp):
        rn, rb = carry
        phi_prev, xt, xb = inp
        rn_new = jnp.logaddexp(rn, phi_prev) + xt
        rb_new = jnp.logaddexp(rb, rn) + xb
        return (rn_new, rb_new), (rn_new, rb_new)

    _, (rn, rb) = jax.lax.scan(body, (rn0, rb0), (phi[:-1], xc[1:], x[1:, blank_id][:, None, None]))
    r_new = jnp.stack([jnp.concatenate([rn0[None], rn]), jnp.concatenate([rb0[None], rb])], axis=-1)
    psi = jnp.logaddexp(rn0, jax.nn.logsumexp(phi[:-1] + xc[1:], axis=0)) if x.shape[0] > 1 else rn0
    return psi, r_new


# ---------------------------------------------------------------------------------------------- joint search
@dataclasses.dataclass(frozen=True)
class BeamSearchConfig:
    beam_size: int = 10
    ctc_weight: float = 0.4
    length_normalization: bool = True
    max_decode_ratio: float = 1.0
    bos_id: int = 1
    eos_id: int = 2
    blank_id: int = 0
    ctc_topk: int = 0  # 0: CTC-score every token; k > 0: only each hypothesis' attention top-k
    beam_prune_logp: float = -12.0  # CTC-only prefix beam search pruning (SpeechBrain CTCBeamSearcher)
    token_prune_min_logp: float = -1.2


class Hypothesis(NamedTuple):
    tokens: list[int]  # without bos/eos
    score: float  # ranking score (length-normalised if configured)
    logp: float  # raw accumulated joint log-probability, eos included


def length_bucket(n: int, minimum: int = 16) -> int:
    """The smallest of ``minimum·2^k`` and ``0.75·minimum·2^k`` (16, 24, 32, 48, 64, 96, ...) that is >= ``n``:
    padding wastes at most a third, and the number of compiled shapes grows with the log of the length."""
    b = max(int(minimum), 1)
    while b < n:
        b *= 2
    return b * 3 // 4 if b > minimum and b * 3 // 4 >= n else b


# The decoder's jitted pieces take the model's GraphDef as a static argument: it hashes by value (the module
# structure), so every utterance, and every model of the same config, reuses one compiled function per shape.
@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _decoder_init(graphdef, params, enc, length, n, max_len):
    enc = jnp.broadcast_to(enc, (n, *enc.shape[1:]))  # [W, L, D]
    return nnx.merge(graphdef, params).init_decoder_state(enc, jnp.full((n,), length, jnp.int32), max_len)


@functools.partial(jax.jit, static_argnums=0)
def _decoder_step(graphdef, params, state, beam_idx, tokens, pos):
    state = jax.tree.map(lambda a: a[beam_idx], state)
    return nnx.merge(graphdef, params).decode_step(tokens, state, pos)


@functools.partial(jax.jit, static_argnums=0)
def _decoder_full(graphdef, params, prefix, enc, length):
    n = prefix.shape[0]
    enc = jnp.broadcast_to(enc, (n, *enc.shape[1:]))  # [W, L, D]
    return nnx.merge(graphdef, params).decode(prefix, enc, jnp.full((n,), length, jnp.int32))[:, -1]


class _Scorer:
    """Decoder scoring for one utterance: incremental (state) or full recompute of the prefix.

    ``enc [1, Tb, D]`` may be zero-padded past ``length`` frames (masked as cross-attention keys)."""

    def __init__(self, model: nnx.Module, enc: jax.Array, length: int, n: int, max_len: int, incremental: bool):
        self.graphdef, self.params = nnx.split(model)
        self.incremental = incremental
        self.enc, self.len = enc, jnp.asarray(length, jnp.int32)
        if incremental:
            self.state = _decoder_init(self.graphdef, self.params, enc, self.len, n, max_len)

    def __call__(self, prefix: np.ndarray, beam_idx: np.ndarray) -> jax.Array:
        """Next-token log-probs ``[N, V]`` for ``prefix [N, s+1]`` (bos first), hypotheses reordered by
        ``beam_idx`` since the previous call."""
        if self.incremental:
            logp, self.state = _decoder_step(self.graphdef, self.params, self.state, jnp.asarray(beam_idx),
                                             jnp.asarray(prefix[:, -1]), jnp.asarray(prefix.shape[1] - 1))
            return logp
        return _decoder_full(self.graphdef, self.params, jnp.asarray(prefix), self.enc, self.len)


@functools.partial(jax.jit, static_argnames=("blank_id", "bos_id", "eos_id", "topk", "w"))
def _joint_scores(att, x, ctc_st, *, blank_id, bos_id, eos_id, topk, w):
    """Joint step scores ``[N, V]`` (candidates outside the top-k get -inf) and the candidates' CTC r."""
    n, v = att.shape
    if topk:
        cand = jax.lax.top_k(att, topk)[1]  # [W, Kt]
    else:
        cand = jnp.broadcast_to(jnp.arange(v), (n, v))
    psi, r_new = ctc_prefix_score(x, ctc_st, cand, blank_id=blank_id, bos_id=bos_id)
    psi_eos = jnp.logaddexp(ctc_st.r[-1, :, 0], ctc_st.r[-1, :, 1])  # [W]
    ctc_full = jnp.full((n, v), NEG_INF).at[jnp.arange(n)[:, None], cand].set(psi)
    ctc_full = ctc_full.at[:, eos_id].set(psi_eos)
    joint = (1.0 - w) * att + w * (ctc_full - ctc_st.psi[:, None])
    joint = joint.at[:, blank_id].set(NEG_INF).at[:, bos_id].set(NEG_INF)
    if topk:
        keep = jnp.zeros((n, v), bool).at[jnp.arange(n)[:, None], cand].set(True).at[:, eos_id].set(True)
        joint = jnp.where(keep, joint, NEG_INF)
    return joint, cand, r_new, ctc_full


def joint_beam_search(model: nnx.Module, enc: Float[Array, "1 L D"], ctc_logprobs: Float[Array, "L V"],
                      cfg: BeamSearchConfig = BeamSearchConfig(), *, incremental: bool = True,
                      length: int | None = None, bucket: bool = True) -> list[Hypothesis]:
    """Joint attention/CTC beam search for one utterance. Returns the finished hypotheses, best first.
    ``model`` needs ``decode``/``init_decoder_state``/``decode_step``.

    ``enc``/``ctc_logprobs``: the utterance's encoder frames and CTC log-probs; frames past ``length`` (default:
    all) are padding. ``bucket``: pad both to :func:`length_bucket` frames, so that utterances of many lengths
    share a few compiled shapes; the padding is exact (padded memory is masked out of the cross-attention, a
    padded CTC frame is a certain blank, which leaves every prefix probability unchanged; the Mamba decoder's
    cross-Mamba state is taken at the last valid frame). The Mamba decoder's full recompute scans
    ``[memory, prefix]`` without a mask (as does its state without ``inert_padding``), so it gets the valid frames
    only."""
    n = cfg.beam_size
    length = int(enc.shape[1] if length is None else length)
    max_steps = max(1, int(length * cfg.max_decode_ratio))
    t_pad = length_bucket(length) if bucket else length
    x = _pad_ctc(ctc_logprobs, length, t_pad, cfg.blank_id)
    # the Mamba decoder's cross-Mamba scans its memory unmasked in the full recompute (and in the incremental
    # state without inert padding): it gets the valid frames only
    mcfg = getattr(model, "cfg", None)
    unmasked = getattr(mcfg, "decoder", None) == "mamba" and not (incremental and getattr(mcfg, "inert_padding", 0))
    mem_frames = length if unmasked else t_pad
    mem = _pad_frames(enc, length, mem_frames)
    max_len = max(1, int(t_pad * cfg.max_decode_ratio)) + 1 if bucket else max_steps + 1
    scorer = _Scorer(model, mem, length, n, max_len, incremental)
    ctc_st = _ctc_init(x, n, blank_id=cfg.blank_id, bos_id=cfg.bos_id)
    prefix = np.full((n, 1), cfg.bos_id, np.int32)
    scores = np.full((n,), NEG_INF)
    scores[0] = 0.0  # one live hypothesis at the start
    beam_idx = np.arange(n)
    finished: list[Hypothesis] = []

    def close(tokens, logp):
        n_tokens = len(tokens) + 1  # + eos
        finished.append(Hypothesis(tokens, logp / n_tokens if cfg.length_normalization else logp, logp))

    for step in range(max_steps):
        att = scorer(prefix, beam_idx)
        joint, cand, r_new, ctc_full = _joint_scores(att, x, ctc_st, blank_id=cfg.blank_id, bos_id=cfg.bos_id,
                                                     eos_id=cfg.eos_id, topk=cfg.ctc_topk, w=cfg.ctc_weight)
        total = scores[:, None] + np.asarray(joint, np.float64)  # [W, V]
        if step == max_steps - 1:  # last step: every live hypothesis ends with eos
            for i in range(n):
                if scores[i] > NEG_INF / 2:
                    close(prefix[i, 1:].tolist(), float(total[i, cfg.eos_id]))
            break
        flat = np.argsort(-total, axis=None, kind="stable")[:2 * n]
        new_rows, new_scores, new_tokens, kpos = [], [], [], []
        cand_np = np.asarray(cand)
        for f in flat:
            i, tok = divmod(int(f), total.shape[1])
            sc = total[i, tok]
            if sc <= NEG_INF / 2:
                break
            if tok == cfg.eos_id:
                close(prefix[i, 1:].tolist(), float(sc))
                continue
            new_rows.append(i)
            new_scores.append(sc)
            new_tokens.append(tok)
            kpos.append(int(np.nonzero(cand_np[i] == tok)[0][0]))
            if len(new_rows) == n:
                break
        if not new_rows or len(finished) >= n:
            break
        pad = n - len(new_rows)
        rows = np.array(new_rows + [new_rows[0]] * pad)
        tokens = np.array(new_tokens + [new_tokens[0]] * pad, np.int32)
        scores = np.array(new_scores + [NEG_INF] * pad)
        kidx = np.array(kpos + [kpos[0]] * pad)
        ctc_st = _advance(r_new, ctc_full, jnp.asarray(rows), jnp.asarray(kidx), jnp.asarray(tokens))
        prefix = np.concatenate([prefix[rows], tokens[:, None]], axis=1)
        beam_idx = rows
    return sorted(finished, key=lambda h: -h.score)


def _pad_frames(a: Float[Array, "1 L D"], length: int, frames: int) -> Float[Array, "1 frames D"]:
    """The first ``length`` frames of ``a``, zero-padded (or cut) to ``frames`` (on the host: no shape-specific
    device op to compile)."""
    a = np.asarray(a)[:, :min(length, frames)]
    return jnp.asarray(np.pad(a, ((0, 0), (0, frames - a.shape[1]), (0, 0))))


def _pad_ctc(x: Float[Array, "L V"], length: int, frames: int, blank_id: int) -> Float[Array, "frames V"]:
    """CTC log-probs of ``length`` valid frames padded to ``frames`` with certain blanks (log 1 for blank, NEG_INF
    for the rest): ``r^b`` carries the prefix's total through them and ``r^n`` gains nothing, so every prefix and
    eos score equals the unpadded one."""
    x = np.asarray(x, np.float32)[:min(length, frames)]
    pad = np.full((frames - x.shape[0], x.shape[1]), NEG_INF, np.float32)
    pad[:, blank_id] = 0.0
    return jnp.asarray(np.concatenate([x, pad]))


_ctc_init = jax.jit(ctc_prefix_init, static_argnums=1, static_argnames=("blank_id", "bos_id"))


@jax.jit
def _advance(r_new, ctc_full, rows, kidx, tokens) -> CTCPrefixState:
    """The CTC prefix state of the surviving hypotheses (row ``rows`` extended by ``tokens``)."""
    return CTCPrefixState(r_new[:, rows, kidx], ctc_full[rows, tokens], tokens)


def beam_search_config_from(decoding_cfg, tokenizer_cfg) -> BeamSearchConfig:
    """From a config's ``decoding`` and ``tokenizer`` blocks."""
    return BeamSearchConfig(beam_size=decoding_cfg.beam_size, ctc_weight=decoding_cfg.ctc_weight,
                            length_normalization=decoding_cfg.length_normalization,
                            max_decode_ratio=decoding_cfg.max_decode_ratio, bos_id=tokenizer_cfg.bos_id,
                            eos_id=tokenizer_cfg.eos_id, blank_id=tokenizer_cfg.blank_id,
                            ctc_topk=decoding_cfg.ctc_topk,
                            beam_prune_logp=decoding_cfg.get("beam_prune_logp", -12.0),
                            token_prune_min_logp=decoding_cfg.get("token_prune_min_logp", -1.2))


@nnx.jit
def encode(model: nnx.Module, feats: Float[Array, "B L F"], feat_lengths: Int[Array, "B"]
           ) -> tuple[Float[Array, "B L4 D"], Int[Array, "B"], Float[Array, "B L4 V"]]:
    """Encoder output, its valid lengths and the CTC log-probs (jitted)."""
    enc, enc_len = model.encode(feats, feat_lengths)
    return enc, enc_len, model.ctc_logprobs(enc)


def decode_batch(model: nnx.Module, feats: Float[Array, "B L F"], feat_lengths: Int[Array, "B"],
                 cfg: BeamSearchConfig, *, method: str = "joint", incremental: bool = True) -> list[list[int]]:
    """Best token sequence per utterance with ``method`` 'joint' | 'ctc_greedy' | 'ctc_beam'."""
    enc, enc_len, ctc = encode(model, feats, feat_lengths)
    if method == "ctc_greedy":
        return ctc_greedy(ctc, enc_len, blank_id=cfg.blank_id)
    out = []
    enc, ctc = np.asarray(enc), np.asarray(ctc)  # per-utterance slices on the host: no device op per row
    for b, n in enumerate(np.asarray(enc_len)):
        n = int(n)
        if method == "ctc_beam":
            hyps = ctc_prefix_beam_search(ctc[b, :n], beam_size=cfg.beam_size, blank_id=cfg.blank_id,
                                          beam_prune_logp=cfg.beam_prune_logp,
                                          token_prune_min_logp=cfg.token_prune_min_logp)
            out.append(hyps[0][0] if hyps else [])
        elif method == "joint":
            hyps = joint_beam_search(model, enc[b:b + 1], ctc[b], cfg, incremental=incremental, length=n)
            out.append(hyps[0].tokens if hyps else [])
        else:
            raise ValueError(f"method must be joint|ctc_greedy|ctc_beam, got {method!r}")
    return out
