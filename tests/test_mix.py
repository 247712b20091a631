"""Crossfades, speech detection on real recordings, ducking depth, loudness and true peak."""

from pathlib import Path

import numpy as np
import pytest

from conftest import MEDIA, MUSIC, SPEECH
from scoretrack import media, mix
from scoretrack.mix import MixOptions

RATE = 48000


def speech(name: str, seconds: float | None = None) -> np.ndarray:
    info_s = seconds or 10.0
    return media.read_audio(MEDIA / name, sample_rate=RATE, duration_s=info_s)


@pytest.mark.parametrize("curve,level", [("equal_gain", 1.0), ("equal_power", 2 ** 0.5)])
def test_crossfade_keeps_level_for_its_kind_of_signal(curve, level):
    rng = np.random.default_rng(0)
    same = np.ones((1, 1000), np.float32)
    joined = mix.crossfade_join(same, same, fade_samples=400, curve=curve)
    assert joined.shape == (1, 1600)
    if curve == "equal_gain":  # correlated: amplitude stays 1
        np.testing.assert_allclose(joined, 1.0, atol=1e-6)
    else:  # independent noise: power stays 1
        a, b = rng.standard_normal((2, 1, 200_000))
        middle = mix.crossfade_join(a, b, fade_samples=100_000, curve=curve)[:, 100_000:200_000]
        assert np.var(middle) == pytest.approx(1.0, rel=0.02)
    with pytest.raises(Exception):
        mix.crossfade_join(same, same, fade_samples=2000)


def reference_regions(audio: np.ndarray) -> np.ndarray:
    """Per-30 ms frame truth for a speech-only recording: frames more than 35 dB under the peak are
    pauses (as MANIFEST.md measures them), the rest speech."""
    import librosa

    flags = np.zeros(audio.shape[1] // (RATE * 30 // 1000), dtype=bool)
    for start, end in librosa.effects.split(audio[0], top_db=35, frame_length=2048, hop_length=512):
        flags[start // 1440 : end // 1440 + 1] = True
    return flags[: len(flags)]


@pytest.mark.parametrize("name", SPEECH)
def test_detects_speech_in_real_recordings(name):
    audio = speech(name, 14.0)
    found = mix.detect_speech(audio, sample_rate=RATE)
    truth = reference_regions(audio)[: len(found)]
    recall = (found & truth).sum() / max(truth.sum(), 1)
    assert recall > 0.6


@pytest.mark.parametrize("name", MUSIC)
def test_rarely_calls_music_speech(name):
    found = mix.detect_speech(speech(name, 20.0), sample_rate=RATE)
    assert found.mean() < 0.1  # BENCHMARKS.md has the measured figures


def lay_speech_on_clip():
    """JFK's speech placed at 2-6 s and 12-16 s of a 20 s clip, with long pauses between."""
    words = speech("speech_jfk.wav", 4.0)
    original = np.zeros((2, 20 * RATE), np.float32)
    for at in (2, 12):
        original[:, at * RATE : (at + 4) * RATE] = words
    t = np.arange(original.shape[1]) / RATE
    music = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.3 * np.sin(2 * np.pi * 277 * t)]).astype(np.float32)
    return music, original


@pytest.mark.parametrize("depth", [-12.0, -20.0])
def test_music_ducks_under_speech_and_hits_loudness(depth):
    music, original = lay_speech_on_clip()
    result = mix.mix(music, original, sample_rate=RATE, options=MixOptions(depth_db=depth, fade_in_s=0, fade_out_s=0))
    gain_db = 20 * np.log10(result.gain)
    # JFK speaks without a break for the first ~2.2 s of each placement
    during = np.concatenate([gain_db[int(2.5 * RATE) : int(4.2 * RATE)], gain_db[int(12.5 * RATE) : int(14.2 * RATE)]])
    pause = gain_db[int(8.5 * RATE) : int(10.5 * RATE)]
    assert pause.mean() - during.mean() >= -depth - 1
    assert result.loudness_lufs == pytest.approx(-14.0, abs=0.5)
    assert result.true_peak_dbtp <= -1.0 + 1e-6
    # the music stem carries the ducking too
    assert np.abs(result.music[:, int(2.5 * RATE) : int(4 * RATE)]).max() < np.abs(result.music[:, int(9 * RATE) : int(10 * RATE)]).max()


def test_music_is_already_down_when_a_word_starts():
    music, original = lay_speech_on_clip()
    result = mix.mix(music, original, sample_rate=RATE, options=MixOptions(fade_in_s=0, fade_out_s=0))
    first_word = result.speech[0][0]
    assert 20 * np.log10(result.gain[int(first_word * RATE)]) <= -12 + 0.5
    assert 20 * np.log10(result.gain[int((first_word - 0.2) * RATE)]) > -1  # and not long before


@pytest.mark.parametrize("target", [-14.0, -23.0])
def test_loudness_on_real_film_audio(target):
    original = media.read_audio(MEDIA / "his_girl_friday_dialogue.mp4", sample_rate=RATE, channels=2)
    t = np.arange(original.shape[1]) / RATE
    music = np.stack([0.5 * np.sign(np.sin(2 * np.pi * 110 * t))] * 2).astype(np.float32)  # peaky square wave
    result = mix.mix(music, original, sample_rate=RATE, options=MixOptions(target_lufs=target))
    assert result.loudness_lufs == pytest.approx(target, abs=0.5)
    assert result.true_peak_dbtp <= -1.0 + 1e-6
    assert np.abs(result.audio).max() < 1.0


@pytest.mark.parametrize("original", [None, "silent", "nan"])
@pytest.mark.parametrize("mode", ["mix", "replace", "music"])
def test_silent_or_missing_original_gives_finite_music_at_target(original, mode):
    t = np.arange(3 * RATE) / RATE
    music = np.stack([0.1 * np.sin(2 * np.pi * 330 * t)] * 2).astype(np.float32)
    source = {None: None, "silent": np.zeros_like(music), "nan": np.zeros_like(music)}[original]
    if original == "nan":
        music = music.copy()
        music[0, 100] = np.nan
    result = mix.mix(music, source, sample_rate=RATE, options=MixOptions(mode=mode))
    assert np.isfinite(result.audio).all()
    assert result.loudness_lufs == pytest.approx(-14.0, abs=0.5)


def test_all_silent_stays_silent_and_finite():
    result = mix.mix(np.zeros((2, RATE), np.float32), np.zeros((2, RATE), np.float32), sample_rate=RATE)
    assert np.isfinite(result.audio).all() and not result.audio.any()
    assert result.loudness_lufs == float("-inf")


def test_fades_shape_the_music_ends():
    faded = mix.fade_edges(np.ones((1, RATE * 4), np.float32), sample_rate=RATE, fade_in_s=1.0, fade_out_s=2.0)
    assert faded[0, 0] < 0.01 and faded[0, -1] < 0.01 and faded[0, 2 * RATE - 10] == pytest.approx(1.0, abs=1e-3)


def test_bad_mix_options():
    for bad in [dict(mode="loud"), dict(depth_db=3), dict(attack_ms=-1), dict(vad_threshold=1.5),
                dict(target_lufs=5), dict(true_peak_dbtp=1)]:
        with pytest.raises(Exception):
            MixOptions(**bad).validate()


def test_sample_clip_speech_is_found(tmp_path, monkeypatch):
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", ["make_sample.py", str(tmp_path / "sample.mp4")])
    runpy.run_path(str(Path(__file__).resolve().parents[1] / "samples" / "make_sample.py"), run_name="__main__")
    regions = mix.speech_regions(mix.detect_speech(media.read_audio(tmp_path / "sample.mp4", sample_rate=RATE), sample_rate=RATE))
    assert len(regions) == 2
    for (start, end), (want_start, want_end) in zip(regions, [(2.0, 4.0), (5.5, 7.0)]):
        assert abs(start - want_start) < 0.2 and abs(end - want_end) < 0.2


def test_true_peak_by_blocks_equals_the_whole_signal():
    from scipy import signal

    x = np.random.default_rng(0).standard_normal((2, 700_001)).astype(np.float32)
    whole = np.abs(signal.resample_poly(x.astype(np.float64), 4, 1, axis=1)).max(axis=0).reshape(-1, 4).max(axis=1)
    np.testing.assert_array_equal(mix._oversampled_peaks(x), whole)
    sine = np.sin(2 * np.pi * 12000 * np.arange(4800) / RATE + np.pi / 4)[None]  # peaks between samples
    assert mix.true_peak_db(sine, sample_rate=RATE) > 20 * np.log10(np.abs(sine).max()) + 1
