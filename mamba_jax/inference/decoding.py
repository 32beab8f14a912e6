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


def ctc_prefix_init(x: Float[Array, "T V"], n: int, *, blank_id: int, bos_id: int) -> CTCPrefixState:
    """The empty prefix (only bos so far): r^n = -inf, r^b_t = sum_{<=t} log p(blank)."""
    rb = jnp.cumsum(x[:, blank_id])
    r = jnp.stack([jnp.full_like(rb, NEG_INF), rb], axis=-1)  # [T, 2]
    return CTCPrefixState(jnp.broadcast_to(r[:, None], (x.shape[0], n, 2)), jnp.zeros((n,)),
                          jnp.full((n,), bos_id, jnp.int32))


def ctc_prefix_score(x: Float[Array, "T V"], st: CTCPrefixState, cand: Int[Array, "N K"], *, blank_id: int,
                     bos_id: int) -> tuple[Float[Array, "N K"], Float[Array, "T N K 2"]]:
    """ψ(prefix + c) for candidates ``cand`` and the extended prefixes' r, by the standard recursion::

        phi_t   = r^b_t(g) if c == last(g) else r^b_t(g) ⊕ r^n_t(g)
        r^n_t(h) = (r^n_{t-1}(h) ⊕ phi_{t-1}) + x_t(c),   r^b_t(h) = (r^b_{t-1}(h) ⊕ r^n_{t-1}(h)) + x_t(blank)
        ψ(h)    = r^n_1(h) ⊕ ⊕_{t>=2} (phi_{t-1} + x_t(c)),  r^n_1(h) = x_1(c) if g is empty else -inf
    """
    xc = x[:, cand]  # [T, N, K]
    r_sum = jnp.logaddexp(st.r[..., 0], st.r[..., 1])  # [T, N]
    same = (cand == st.last[:, None])[None]  # [1, N, K]
    phi = jnp.where(same, st.r[..., 1][..., None], r_sum[..., None])  # [T, N, K]
    empty = (st.last == bos_id)[:, None]
    rn0 = jnp.where(empty, xc[0], NEG_INF)  # [N, K]
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


class _Scorer:
    """Jitted decoder scoring: incremental (state) or full recompute of the prefix."""

    def __init__(self, model: nnx.Module, enc: jax.Array, n: int, max_len: int, incremental: bool):
        self.graphdef, self.params = nnx.split(model)
        self.incremental = incremental
        self.enc = jnp.broadcast_to(enc, (n, *enc.shape[1:]))
        self.len = jnp.full((n,), enc.shape[1], jnp.int32)
        if incremental:
            self.state = self._init(self.params, self.enc, self.len, max_len)

    @functools.partial(jax.jit, static_argnums=(0, 4))
    def _init(self, params, enc, lens, max_len):
        return nnx.merge(self.graphdef, params).init_decoder_state(enc, lens, max_len)

    @functools.partial(jax.jit, static_argnums=0)
    def _step(self, params, state, beam_idx, tokens, pos):
        state = jax.tree.map(lambda a: a[beam_idx], state)
        return nnx.merge(self.graphdef, params).decode_step(tokens, state, pos)

    @functools.partial(jax.jit, static_argnums=0)
    def _full(self, params, prefix, enc, lens):
        return nnx.merge(self.graphdef, params).decode(prefix, enc, lens)[:, -1]

    def __call__(self, prefix: np.ndarray, beam_idx: np.ndarray) -> jax.Array:
        """Next-token log-probs ``[N, V]`` for ``prefix [N, s+1]`` (bos first), hypotheses reordered by
        ``beam_idx`` since the previous call."""
        if self.incremental:
            logp, self.state = self._step(self.params, self.state, jnp.asarray(beam_idx),
                                          jnp.asarray(prefix[:, -1]), jnp.asarray(prefix.shape[1] - 1))
            return logp
        return self._full(self.params, jnp.asarray(prefix), self.enc, self.len)


@functools.partial(jax.jit, static_argnames=("blank_id", "bos_id", "eos_id", "topk", "w"))
def _joint_scores(att, x, ctc_st, *, blank_id, bos_id, eos_id, topk, w):
    """Joint step scores ``[N, V]`` (candidates outside the top-k get -inf) and the candidates' CTC r."""
    n, v = att.shape
    if topk:
        cand = jax.lax.top_k(att, topk)[1]  # [N, K]
    else:
        cand = jnp.broadcast_to(jnp.arange(v), (n, v))
    psi, r_new = ctc_prefix_score(x, ctc_st, cand, blank_id=blank_id, bos_id=bos_id)
    psi_eos = jnp.logaddexp(ctc_st.r[-1, :, 0], ctc_st.r[-1, :, 1])  # [N]
    ctc_full = jnp.full((n, v), NEG_INF).at[jnp.arange(n)[:, None], cand].set(psi)
    ctc_full = ctc_full.at[:, eos_id].set(psi_eos)
    joint = (1.0 - w) * att + w * (ctc_full - ctc_st.psi[:, None])
    joint = joint.at[:, blank_id].set(NEG_INF).at[:, bos_id].set(NEG_INF)
    if topk:
        keep = jnp.zeros((n, v), bool).at[jnp.arange(n)[:, None], cand].set(True).at[:, eos_id].set(True)
        joint = jnp.where(keep, joint, NEG_INF)
    return joint, cand, r_new, ctc_full


def joint_beam_search(model: nnx.Module, enc: Float[Array, "1 T D"], ctc_logprobs: Float[Array, "T V"],
                      cfg: BeamSearchConfig = BeamSearchConfig(), *, incremental: bool = True) -> list[Hypothesis]:
    """Joint attention/CTC beam search for one utterance (``enc`` = its valid encoder frames). Returns the
    finished hypotheses, best first. ``model`` needs ``decode``/``init_decoder_state``/``decode_step``."""
    n, t_frames = cfg.beam_size, enc.shape[1]
    max_steps = max(1, int(t_frames * cfg.max_decode_ratio))
    scorer = _Scorer(model, enc, n, max_steps + 1, incremental)
    x = jnp.asarray(ctc_logprobs, jnp.float32)
    ctc_st = ctc_prefix_init(x, n, blank_id=cfg.blank_id, bos_id=cfg.bos_id)
    prefix = np.full((n, 1), cfg.bos_id, np.int32)
    scores = np.full((n,), NEG_INF)
    scores[0] = 0.0  # one live hypothesis at the start
    beam_idx = np.arange(n)
    finished: list[Hypothesis] = []

    def close(tokens, logp):
        length = len(tokens) + 1
        finished.append(Hypothesis(tokens, logp / length if cfg.length_normalization else logp, logp))

    for step in range(max_steps):
        att = scorer(prefix, beam_idx)
        joint, cand, r_new, ctc_full = _joint_scores(att, x, ctc_st, blank_id=cfg.blank_id, bos_id=cfg.bos_id,
                                                     eos_id=cfg.eos_id, topk=cfg.ctc_topk, w=cfg.ctc_weight)
        total = scores[:, None] + np.asarray(joint, np.float64)  # [N, V]
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
        ctc_st = CTCPrefixState(r_new[:, rows, kidx], ctc_full[rows, tokens], jnp.asarray(tokens))
        prefix = np.concatenate([prefix[rows], tokens[:, None]], axis=1)
        beam_idx = rows
    return sorted(finished, key=lambda h: -h.score)


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
def _encode(model, feats, feat_lengths):
    enc, enc_len = model.encode(feats, feat_lengths)
    return enc, enc_len, model.ctc_logprobs(enc)


def decode_batch(model: nnx.Module, feats: Float[Array, "B L F"], feat_lengths: Int[Array, "B"],
                 cfg: BeamSearchConfig, *, method: str = "joint", incremental: bool = True) -> list[list[int]]:
    """Best token sequence per utterance with ``method`` 'joint' | 'ctc_greedy' | 'ctc_beam'."""
    enc, enc_len, ctc = _encode(model, feats, feat_lengths)
    if method == "ctc_greedy":
        return ctc_greedy(ctc, enc_len, blank_id=cfg.blank_id)
    out = []
    for b, n in enumerate(np.asarray(enc_len)):
        n = int(n)
        if method == "ctc_beam":
            hyps = ctc_prefix_beam_search(ctc[b, :n], beam_size=cfg.beam_size, blank_id=cfg.blank_id,
                                          beam_prune_logp=cfg.beam_prune_logp,
                                          token_prune_min_logp=cfg.token_prune_min_logp)
            out.append(hyps[0][0] if hyps else [])
        elif method == "joint":
            hyps = joint_beam_search(model, enc[b:b + 1, :n], ctc[b, :n], cfg, incremental=incremental)
            out.append(hyps[0].tokens if hyps else [])
        else:
            raise ValueError(f"method must be joint|ctc_greedy|ctc_beam, got {method!r}")
    return out
