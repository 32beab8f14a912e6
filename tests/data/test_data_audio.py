"""Audio I/O: exact PCM round trips, the rate/stereo policies, and errors that name the file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from data_helpers import tone, write_pcm16

from mamba_jax.data import audio


def test_pcm16_round_trip_exact(tmp_path):
    x = tone(1234, 440, 8000)
    expect = write_pcm16(tmp_path / "a.wav", x, 8000)
    y = audio.load_audio(tmp_path / "a.wav", 8000)
    assert y.dtype == np.float32 and y.shape == (1234,)
    np.testing.assert_array_equal(y, expect)
    assert audio.audio_info(tmp_path / "a.wav") == (1234, 8000, 1)


def test_write_audio_is_int16_round(tmp_path):
    x = np.array([0.5, -0.25, 1.0, -1.0, 3e-5], np.float32)
    audio.write_audio(tmp_path / "w.wav", x, 8000)
    q, _ = sf.read(str(tmp_path / "w.wav"), dtype="int16")
    np.testing.assert_array_equal(q, [16384, -8192, 32767, -32768, 1])


def test_flac_reads(tmp_path):
    x = tone(1600, 300, 16000)
    p = tmp_path / "u.flac"
    q = np.round(x * 32768).astype(np.int16)
    sf.write(str(p), q, 16000)
    np.testing.assert_array_equal(audio.load_audio(p, 16000), q / np.float32(32768))


def test_rate_mismatch_resample_and_error(tmp_path):
    p = tmp_path / "r16.wav"
    write_pcm16(p, tone(16000, 440, 16000), 16000)
    y = audio.load_audio(p, 8000, on_rate_mismatch="resample")
    assert y.shape == (8000,)
    # a 440 Hz tone stays a 440 Hz tone at the new rate
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * 8000 / len(y) - 440) <= 1
    with pytest.raises(audio.SampleRateError, match=str(p)) as e:
        audio.load_audio(p, 8000, on_rate_mismatch="error")
    assert "16000" in str(e.value) and "8000" in str(e.value)


def test_stereo_downmix_warns_and_error(tmp_path):
    p = tmp_path / "st.wav"
    a, b = tone(400, 300, 8000), tone(400, 500, 8000, 0.1)
    q = np.round(np.stack([a, b], 1) * 32768).astype(np.int16)
    sf.write(str(p), q, 8000)
    with pytest.warns(UserWarning, match="st.wav"):
        y = audio.load_audio(p, 8000, on_stereo="downmix")
    np.testing.assert_allclose(y, q.astype(np.float64).mean(1) / 32768, atol=1e-7)
    with pytest.raises(audio.ChannelError, match=str(p)):
        audio.load_audio(p, 8000, on_stereo="error")


@pytest.mark.parametrize("kind", ["zero_bytes", "zero_frames"])
def test_empty_names_file(tmp_path, kind):
    p = tmp_path / f"{kind}.wav"
    if kind == "zero_bytes":
        p.write_bytes(b"")
    else:
        sf.write(str(p), np.zeros(0, np.int16), 8000, subtype="PCM_16")
    with pytest.raises(audio.EmptyAudioError, match=str(p)):
        audio.load_audio(p, 8000)


def test_silent_names_file(tmp_path):
    p = tmp_path / "silent.wav"
    write_pcm16(p, np.zeros(100), 8000)
    with pytest.raises(audio.SilentAudioError, match=str(p)):
        audio.load_audio(p, 8000)
    assert audio.load_audio(p, 8000, allow_silent=True).shape == (100,)


def test_corrupt_and_missing_name_file(tmp_path):
    p = tmp_path / "bad.wav"
    p.write_bytes(b"RIFF\x00\x01garbage" + bytes(range(200)))
    with pytest.raises(audio.CorruptAudioError, match=str(p)):
        audio.load_audio(p, 8000)
    with pytest.raises(audio.CorruptAudioError, match=str(p)):
        audio.audio_info(p)
    missing = tmp_path / "nope.wav"
    with pytest.raises(audio.CorruptAudioError, match=str(missing)):
        audio.load_audio(missing, 8000)


def test_sphere_refused_with_fix(tmp_path):
    p = tmp_path / "40na010x.wav"  # converted name, unconverted content: still refused
    header = b"NIST_1A\n   1024\nsample_rate -i 16000\nchannel_count -i 1\nend_head\n"
    p.write_bytes(header.ljust(1024, b" ") + np.zeros(320, np.int16).tobytes())
    assert audio.is_sphere(p)
    for fn in (lambda: audio.load_audio(p, 16000), lambda: audio.audio_info(p)):
        with pytest.raises(audio.SphereFileError, match=str(p)) as e:
            fn()
        assert "sph2pipe -f wav" in str(e.value)


def test_missing_corpus_folder(tmp_path):
    d = tmp_path / "no_such_corpus"
    with pytest.raises(audio.MissingCorpusError, match=str(d)):
        audio.require_dir(d, "wsj0-2mix root")
