"""Dynamic-mixing recipes against their definitions, with statistical bounds over >= 2,000 draws.

Bounds: a mean is within 4 standard errors, a standard deviation within 4 of its standard errors
(sigma / sqrt(2n), normal data), frequencies pass a chi-square test at p > 1e-4. Seeds are fixed,
so the tests are deterministic; a wrong recipe (e.g. g2 drawn independently of g1, speakers
uniform instead of proportional to their counts) fails them by many standard errors.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import chi2

from mamba_jax.data import mixing

N_DRAWS = 2400
COUNTS = [1, 2, 3, 6]  # utterances per speaker
SPEAKER_FILES = [list(range(sum(COUNTS[:k]), sum(COUNTS[:k + 1]))) for k in range(len(COUNTS))]
POOL = sum(COUNTS)


def _load(i: int) -> np.ndarray:
    """Deterministic 'utterance' i: noise of a length that depends on i (600..1700 samples)."""
    rng = np.random.default_rng(1000 + i)
    return (rng.standard_normal(600 + 100 * i) * (0.05 + 0.01 * i)).astype(np.float32)


def _speaker_of(f: int) -> int:
    return next(k for k, fs in enumerate(SPEAKER_FILES) if f in fs)


def _chi2_ok(observed, expected_p) -> float:
    observed = np.asarray(observed, np.float64)
    expected = np.asarray(expected_p, np.float64) * observed.sum()
    stat = float(np.sum((observed - expected) ** 2 / expected))
    return float(chi2.sf(stat, len(observed) - 1))


def _mean_std_ok(x, mu, sigma):
    x = np.asarray(x, np.float64)
    n = len(x)
    assert abs(x.mean() - mu) < 4 * sigma / math.sqrt(n), (x.mean(), mu)
    assert abs(x.std(ddof=1) - sigma) < 4 * sigma / math.sqrt(2 * n), (x.std(ddof=1), sigma)


@pytest.fixture(scope="module")
def sb_draws():
    out = []
    for i in range(N_DRAWS):
        rng = mixing.item_rng(7, 0, i)
        srng = mixing.item_rng(7, 0, i, mixing.STREAM_SPEED)
        out.append(mixing.mix_speechbrain(rng, SPEAKER_FILES, _load, speed_rng=srng))
    return out


def test_sb_gains_match_recipe(sb_draws):
    g = np.array([r.gains_db for r in sb_draws])
    assert np.all((g >= -45) & (g <= 0))
    _mean_std_ok(g[:, 0], *mixing.SB_GAIN1)            # clipping at [-45, 0] is > 7 sigma away
    _mean_std_ok(g[:, 1] - g[:, 0], *mixing.SB_GAIN_DIFF)
    assert abs(np.corrcoef(g[:, 0], g[:, 1] - g[:, 0])[0, 1]) < 4 / math.sqrt(len(g))


def test_sb_speaker_pairs_proportional_to_counts(sb_draws):
    p = np.array(COUNTS, np.float64) / sum(COUNTS)
    pairs = list(itertools.combinations(range(len(COUNTS)), 2))
    # np.random.choice(replace=False, p): P(i then j) = p_i p_j / (1 - p_i)
    expect = [p[i] * p[j] / (1 - p[i]) + p[j] * p[i] / (1 - p[j]) for i, j in pairs]
    seen = {pr: 0 for pr in pairs}
    first = np.zeros(len(COUNTS))
    for r in sb_draws:
        a, b = (_speaker_of(f) for f in r.files)
        assert a != b, "SpeechBrain never mixes a speaker with itself"
        seen[tuple(sorted((a, b)))] += 1
        first[a] += 1
    assert _chi2_ok([seen[pr] for pr in pairs], expect) > 1e-4
    assert _chi2_ok(first, p) > 1e-4
    uniform = [1 / len(pairs)] * len(pairs)  # the test has power: uniform speakers are rejected
    assert _chi2_ok([seen[pr] for pr in pairs], uniform) < 1e-6


def test_sb_speeds_uniform_and_independent(sb_draws):
    joint = {pr: 0 for pr in itertools.product(mixing.SPEEDS, repeat=2)}
    for r in sb_draws:
        joint[r.speeds] += 1
    assert _chi2_ok(list(joint.values()), [1 / 9] * 9) > 1e-4


def test_sb_output_structure():
    for i in range(40):
        r = mixing.mix_speechbrain(mixing.item_rng(3, 1, i), SPEAKER_FILES, _load)
        s1, s2 = r.sources
        # gains are relative to mean |x|: the level ratio of the outputs is g2 - g1 exactly
        ratio_db = 20 * np.log10(np.mean(np.abs(s2)) / np.mean(np.abs(s1)))
        assert ratio_db == pytest.approx(r.gains_db[1] - r.gains_db[0], abs=1e-3)
        peak = max(np.abs(r.mix).max(), np.abs(r.sources).max())
        assert peak == pytest.approx(0.9, rel=1e-5)
        np.testing.assert_allclose(r.mix, s1 + s2, atol=1e-6)
        assert len(r.mix) == min(len(_load(f)) for f in r.files)  # crop to the shorter


def test_sb_speed_lengths_and_resum():
    for i in range(30):
        rng, srng = mixing.item_rng(5, 0, i), mixing.item_rng(5, 0, i, mixing.STREAM_SPEED)
        base = mixing.mix_speechbrain(mixing.item_rng(5, 0, i), SPEAKER_FILES, _load)
        r = mixing.mix_speechbrain(rng, SPEAKER_FILES, _load, speed_rng=srng)
        t = len(base.mix)
        assert len(r.mix) == min(math.ceil(t * s / 100) for s in r.speeds)
        np.testing.assert_allclose(r.mix, r.sources.sum(0), atol=1e-6)
        assert r.files == base.files and r.gains_db == base.gains_db


def _find_crop(src: np.ndarray, raw: np.ndarray) -> tuple[int, float]:
    """The offset and gain with ``src == gain * raw[offset:offset + len(src)]`` (float32 tolerance)."""
    win = np.lib.stride_tricks.sliding_window_view(raw.astype(np.float64), len(src))  # [offsets, n]
    gain = src[0] / win[:, :1]
    ok = np.flatnonzero(np.all(np.abs(src - gain * win) <= 1e-7 + 1e-5 * np.abs(src), axis=1))
    assert len(ok), "the source is no scaled window of its file"
    return int(ok[0]), float(gain[ok[0], 0])


def test_sb_segment_caps_length():
    """Each source is a 300-sample window of its file at the recipe's level: ``0.9 / peak * 10^(g/20) / mean|w|``
    (the peak over the mixture and both sources: items 17, 19 and 23 have a source peak above the mixture's),
    and the mixture is their sum."""
    for i in range(24):
        r = mixing.mix_speechbrain(mixing.item_rng(0, 0, i), SPEAKER_FILES, _load, segment=300)
        assert r.mix.shape == (300,) and r.sources.shape == (2, 300)
        np.testing.assert_allclose(r.mix, r.sources.sum(0), atol=1e-6)
        windows, gains = [], []
        for src, f in zip(r.sources, r.files):
            o, gain = _find_crop(src, _load(f))
            windows.append(_load(f)[o:o + 300].astype(np.float64))
            gains.append(gain)
        pre = [w * 10 ** (g / 20) / np.mean(np.abs(w)) for w, g in zip(windows, r.gains_db)]
        peak = max(np.abs(pre[0] + pre[1]).max(), np.abs(pre[0]).max(), np.abs(pre[1]).max())
        for k in range(2):
            assert gains[k] == pytest.approx(0.9 / peak * 10 ** (r.gains_db[k] / 20) / np.mean(np.abs(windows[k])),
                                             rel=1e-4)


def test_sepmamba_recipe_statistics():
    seg = 1000
    g, files, same_file = [], np.zeros(POOL), 0
    for i in range(N_DRAWS):
        r = mixing.mix_sepmamba(mixing.item_rng(11, 0, i), POOL, _load, sample_rate=8000,
                                segment=seg)
        assert r.mix.shape == (seg,) and r.sources.shape == (2, seg)
        assert not np.any(r.mix == 0) and not np.any(r.sources == 0)
        assert max(np.abs(r.mix).max(), np.abs(r.sources).max()) <= 0.9 + 1e-6
        g.append(r.gains_db)
        for f in r.files:
            files[f] += 1
        same_file += r.files[0] == r.files[1]
    g = np.array(g)
    assert g[:, 0].min() >= -2.5 and g[:, 0].max() <= 0 and g[:, 1].min() >= 0 and g[:, 1].max() <= 2.5
    _mean_std_ok(g[:, 0], -1.25, 2.5 / math.sqrt(12))
    _mean_std_ok(g[:, 1], 1.25, 2.5 / math.sqrt(12))
    assert _chi2_ok(files, [1 / POOL] * POOL) > 1e-4           # uniform over files, any speaker
    p = 1 / POOL                                               # same file is possible
    assert abs(same_file / N_DRAWS - p) < 4 * math.sqrt(p * (1 - p) / N_DRAWS)


def test_sepmamba_levels_padding_and_peak():
    seg = 2000  # longer than files 0..13: right zero-pad (then +-1e-9 fill)
    for i in range(20):
        r = mixing.mix_sepmamba(mixing.item_rng(2, 0, i), POOL, _load, sample_rate=8000,
                                segment=seg)
        n = [len(_load(f)) for f in r.files]
        for k in range(2):
            tail = r.sources[k, n[k]:]
            assert np.all(np.abs(tail) <= 1e-9) and len(np.unique(tail)) <= 1
        raw = [_load(f) for f in r.files]
        # undo the final 0.9 / max(1, peak) scale and compare with 1/sqrt(activlev) * 10^(g/20)
        pre = [x / math.sqrt(mixing.active_level(x, 8000)) * 10 ** (gd / 20)
               for x, gd in zip(raw, r.gains_db)]
        scale = r.sources[0, :n[0]] / pre[0]
        assert np.allclose(scale, scale[0], rtol=1e-4)
        full = np.zeros((2, seg))
        for k in range(2):
            full[k, :n[k]] = pre[k]
        true_peak = max(np.abs(full.sum(0)).max(), np.abs(full).max())
        assert scale[0] == pytest.approx(0.9 / max(1.0, true_peak), rel=1e-4)
        # one scale for both sources, and the mixture is their sum (up to the +-1e-9 zero fill)
        np.testing.assert_allclose(r.sources[1, :n[1]], scale[0] * pre[1], rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(r.mix, r.sources.sum(0), rtol=0, atol=3e-9 + 1e-6 * np.abs(r.mix).max())


def test_active_level_matches_naive_p56():
    def naive(x, fs, margin=15.9):
        g = math.exp(-1 / (fs * 0.03))
        hang = math.ceil(0.2 * fs)
        c = [2.0 ** (j - 15) for j in range(16)]
        q = p = s = 0.0
        count, since = [0] * 16, [hang] * 16
        for v in x:
            s += v * v
            q = g * q + (1 - g) * abs(v)
            p = g * p + (1 - g) * q
            for j in range(16):
                if p >= c[j]:
                    count[j] += 1
                    since[j] = 0
                elif since[j] < hang:
                    count[j] += 1
                    since[j] += 1
        a = [10 * math.log10(s / k) if k else None for k in count]
        d = [a[j] - 20 * math.log10(c[j]) if a[j] is not None else None for j in range(16)]
        for j in range(1, 16):
            if d[j] is None:
                break
            if d[j] <= margin <= d[j - 1]:
                w = (d[j - 1] - margin) / (d[j - 1] - d[j])
                return 10 ** ((a[j - 1] + w * (a[j] - a[j - 1])) / 10)
        return s / len(x)

    rng = np.random.default_rng(0)
    fs = 8000
    burst = rng.standard_normal(fs // 2) * 0.05
    x = np.concatenate([np.zeros(fs // 4), burst, np.zeros(fs // 2), 0.3 * burst[:fs // 8]])
    assert mixing.active_level(x, fs) == pytest.approx(naive(x.tolist(), fs), rel=1e-9)


def test_active_level_physical_sanity():
    rng = np.random.default_rng(1)
    fs = 8000
    noise = rng.standard_normal(4 * fs) * 0.05
    power = np.mean(noise ** 2)
    # continuous signal: active level = mean square
    assert 10 * np.log10(mixing.active_level(noise, fs) / power) == pytest.approx(0, abs=0.2)
    # 1 s burst in 4 s: silence is excluded except the 0.2 s hangover (+ envelope decay)
    x = np.concatenate([noise[:fs], np.zeros(3 * fs)])
    db = 10 * np.log10(mixing.active_level(x, fs) / np.mean(noise[:fs] ** 2))
    assert -1.5 < db < 10 * np.log10(1 / 1.2) + 0.05
    # scale invariance over the threshold grid: 20 dB quieter -> 20 dB lower level
    assert 10 * np.log10(mixing.active_level(0.1 * x, fs) / mixing.active_level(x, fs)) == \
        pytest.approx(-20, abs=0.3)


def test_speed_perturb_is_resampling():
    fs = 8000
    x = np.sin(2 * np.pi * 400 * np.arange(fs) / fs).astype(np.float32)
    for speed in mixing.SPEEDS:
        y = mixing.speed_perturb(x, speed)
        assert len(y) == math.ceil(fs * speed / 100)
        f = np.argmax(np.abs(np.fft.rfft(y * np.hanning(len(y))))) * fs / len(y)
        assert f == pytest.approx(400 * 100 / speed, abs=fs / len(y))  # SB: speed 95 -> higher pitch


def test_rescale_avg_db():
    x = np.random.default_rng(0).standard_normal(1000)
    y = mixing.rescale_avg_db(x, -27.0)
    assert np.mean(np.abs(y)) == pytest.approx(10 ** (-27 / 20), rel=1e-5)


def test_item_rng_is_pure():
    a = mixing.mix_speechbrain(mixing.item_rng(9, 4, 17), SPEAKER_FILES, _load,
                               speed_rng=mixing.item_rng(9, 4, 17, mixing.STREAM_SPEED))
    b = mixing.mix_speechbrain(mixing.item_rng(9, 4, 17), SPEAKER_FILES, _load,
                               speed_rng=mixing.item_rng(9, 4, 17, mixing.STREAM_SPEED))
    np.testing.assert_array_equal(a.mix, b.mix)
    c = mixing.mix_speechbrain(mixing.item_rng(9, 5, 17), SPEAKER_FILES, _load)
    assert c.gains_db != a.gains_db
