"""Search: incremental decoder state == full recomputation; CTC prefix scores vs brute force."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mamba_jax.decoding import (BeamSearchConfig, CTCPrefixState, ctc_greedy, ctc_prefix_beam_search,
                                          ctc_prefix_init, ctc_prefix_score, joint_beam_search)
from mamba_jax.models.conmamba import ConMambaASR, ConMambaConfig
from mamba_jax.training.asr_losses import ctc_loss


def _tiny(decoder: str, seed: int) -> ConMambaASR:
    cfg = ConMambaConfig(d_model=32, num_encoder_layers=1, num_decoder_layers=2, num_heads=2, d_ffn=48,
                         vocab_size=12, decoder=decoder, conv_kernel_size=5, max_len=64, scan_impl="sequential")
    model = ConMambaASR(cfg, rngs=nnx.Rngs(seed))
    model.eval()
    return model


@pytest.fixture(scope="module", params=["transformer", "mamba"])
def tiny_model(request):
    return _tiny(request.param, seed=3)


# The model's methods compiled (called eagerly, each of their ops would compile on its own, for every shape).
_encode = nnx.jit(lambda m, x, n: m.encode(x, n))
_ctc_logprobs = nnx.jit(lambda m, e: m.ctc_logprobs(e))
_decode = nnx.jit(lambda m, t, e, n: m.decode(t, e, n))
_init_state = nnx.jit(lambda m, e, n, k: m.init_decoder_state(e, n, k), static_argnums=3)
_step = nnx.jit(lambda m, t, st, pos: m.decode_step(t, st, pos))


def test_incremental_equals_full_recompute(tiny_model):
    model = tiny_model
    feats = jax.random.normal(jax.random.key(0), (1, 44, 80))
    enc, _ = _encode(model, feats, jnp.array([44]))
    ctc = _ctc_logprobs(model, enc)[0]
    cfg = BeamSearchConfig(beam_size=3, ctc_weight=0.4, max_decode_ratio=0.7)
    inc = joint_beam_search(model, enc, ctc, cfg, incremental=True)
    full = joint_beam_search(model, enc, ctc, cfg, incremental=False)
    assert len(inc) == len(full) > 0
    assert [h.tokens for h in inc] == [h.tokens for h in full]
    np.testing.assert_allclose([h.score for h in inc], [h.score for h in full], rtol=1e-4, atol=1e-4)
    assert any(len(h.tokens) > 3 for h in inc)  # the caches were exercised over several steps


def test_decode_step_matches_full_decode(tiny_model):
    for model in (tiny_model,):
        enc = jax.random.normal(jax.random.key(1), (2, 9, 32))
        toks = jnp.array([[1, 5, 7, 3, 9], [1, 4, 4, 8, 10]])
        full = _decode(model, toks, enc, jnp.array([9, 9]))
        st = _init_state(model, enc, jnp.array([9, 9]), 8)
        for pos in range(toks.shape[1]):
            lp, st = _step(model, toks[:, pos], st, jnp.asarray(pos))
            np.testing.assert_allclose(lp, full[:, pos], atol=2e-4)


def _paths(t, v):
    return itertools.product(range(v), repeat=t)


def _collapse(path, blank=0):
    return tuple(k for i, k in enumerate(path) if k != blank and (i == 0 or path[i - 1] != k))


def test_ctc_prefix_score_brute_force():
    """ψ(g + c) = log sum of paths whose collapse starts with g + c; eos: paths collapsing exactly to g."""
    rng = np.random.default_rng(0)
    t, v = 5, 4  # blank 0, bos 1 (never emitted by CTC but used as the 'empty prefix' marker)
    x = np.asarray(jax.nn.log_softmax(jnp.asarray(rng.normal(size=(t, v)) * 1.5), -1), np.float64)
    st = ctc_prefix_init(jnp.asarray(x, jnp.float32), 1, blank_id=0, bos_id=1)
    prefix: tuple[int, ...] = ()
    for nxt in (2, 2, 3):
        cand = jnp.array([[2, 3]])
        psi, r_new = ctc_prefix_score(jnp.asarray(x, jnp.float32), st, cand, blank_id=0, bos_id=1)
        for k, c in enumerate((2, 3)):
            target = prefix + (c,)
            ref = -np.inf
            for p in _paths(t, v):
                col = _collapse(p)
                if col[:len(target)] == target:
                    ref = np.logaddexp(ref, sum(x[i, s] for i, s in enumerate(p)))
            assert float(psi[0, k]) == pytest.approx(ref, abs=1e-4)
        k = (2, 3).index(nxt)
        st = CTCPrefixState(r_new[:, :, k], psi[:, k], jnp.array([nxt]))
        prefix = prefix + (nxt,)
    full = float(jnp.logaddexp(st.r[-1, 0, 0], st.r[-1, 0, 1]))
    lab = jnp.array([list(prefix)])
    ref_full = -float(ctc_loss(jnp.asarray(x[None], jnp.float32), jnp.array([t]), lab, jnp.array([3]),
                               reduction="none")[0])
    assert full == pytest.approx(ref_full, abs=1e-4)


def test_ctc_prefix_beam_search_finds_best_prefix():
    rng = np.random.default_rng(4)
    t, v = 5, 3
    x = np.asarray(jax.nn.log_softmax(jnp.asarray(rng.normal(size=(t, v)) * 2), -1), np.float64)
    totals: dict = {}
    for p in _paths(t, v):
        col = _collapse(p)
        totals[col] = np.logaddexp(totals.get(col, -np.inf), sum(x[i, s] for i, s in enumerate(p)))
    best = max(totals, key=totals.get)
    hyps = ctc_prefix_beam_search(x, beam_size=50, beam_prune_logp=-1e9, token_prune_min_logp=-1e9)
    assert tuple(hyps[0][0]) == best and hyps[0][1] == pytest.approx(totals[best], abs=1e-9)
    assert ctc_greedy(jnp.asarray(x[None]), jnp.array([t]))[0] == list(
        _collapse(tuple(np.argmax(x, -1))))


def _utterance(seed: int, t: int, d: int = 32, v: int = 12):
    """Encoder frames and peaked CTC log-probs of a fake utterance (numpy: no device op to compile here)."""
    rng = np.random.default_rng(seed)
    logits = 3.0 * rng.standard_normal((t, v)).astype(np.float32)
    ctc = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return rng.standard_normal((1, t, d)).astype(np.float32), ctc


def test_bucketed_search_equals_unpadded(tiny_model):
    """Padding the memory and the CTC frames to the length bucket changes no hypothesis or score."""
    cfg = BeamSearchConfig(beam_size=3, ctc_weight=0.4, max_decode_ratio=0.4)
    for t in (21,):  # bucket 24
        enc, ctc = _utterance(t, t)
        ref = joint_beam_search(tiny_model, jnp.asarray(enc), jnp.asarray(ctc), cfg, bucket=False)
        got = joint_beam_search(tiny_model, jnp.asarray(enc), jnp.asarray(ctc), cfg, bucket=True)
        assert [h.tokens for h in got] == [h.tokens for h in ref] and len(ref) > 0
        np.testing.assert_allclose([h.score for h in got], [h.score for h in ref], rtol=1e-5, atol=1e-5)


def test_padded_memory_decoder_state(tiny_model):
    """init_decoder_state on right-padded memory with lengths == on each row's unpadded memory."""
    enc = jax.random.normal(jax.random.key(2), (2, 13, 32))
    lengths = jnp.array([13, 6])
    toks = jnp.array([[1, 5, 7], [1, 4, 9]])
    st = _init_state(tiny_model, enc.at[1, 6:].set(7.0), lengths, 4)  # padding holds garbage
    for b in range(2):
        n = int(lengths[b])
        ref_st = _init_state(tiny_model, enc[b:b + 1, :n], jnp.array([n]), 4)
        row = jax.tree.map(lambda a, b=b: a[b:b + 1], st)
        for pos in range(toks.shape[1]):
            lp, row = _step(tiny_model, toks[b:b + 1, pos], row, jnp.asarray(pos))
            ref, ref_st = _step(tiny_model, toks[b:b + 1, pos], ref_st, jnp.asarray(pos))
            np.testing.assert_allclose(lp, ref, atol=1e-5)


def test_beam_search_compiles_a_bounded_number_of_times(tiny_model):
    """Ten utterances of ten lengths in one bucket: everything compiles for the first, nothing after (the
    search used to compile anew for every utterance: a new scorer object as a static argument)."""
    from jax._src import monitoring

    compiles = []

    def listen(event, duration, **kw):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    cfg = BeamSearchConfig(beam_size=2, ctc_weight=0.4, max_decode_ratio=0.25)
    monitoring.register_event_duration_secs_listener(listen)
    try:
        # The listener sees compilations (a shape per decoder: the second parametrization cannot find this
        # program in the run's persistent compilation cache, tests/conftest.py).
        jax.jit(lambda x: x * 3.0)(np.ones(7 + len(tiny_model.cfg.decoder)))
        assert len(compiles) == 1
        per_utt = []
        for i, t in enumerate(range(33, 43)):  # bucket 48
            enc, ctc = _utterance(100 + i, t)
            before = len(compiles)
            joint_beam_search(tiny_model, enc, ctc, cfg)  # numpy in: no per-length device op here
            per_utt.append(len(compiles) - before)
    finally:
        monitoring.unregister_event_duration_listener(listen)
    print(f"compilations per utterance ({tiny_model.cfg.decoder} decoder): {per_utt}")
    assert per_utt[1:] == [0] * 9, per_utt
