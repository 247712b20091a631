"""Chroma equals what transformers' MusicgenMelodyFeatureExtractor produced (../shared/reference/chroma)."""

import json

import numpy as np
import pytest

from conftest import REFERENCE
from scoretrack import melody

CASES = sorted(json.loads((REFERENCE / "README.json").read_text())["cases"])


@pytest.mark.parametrize("case", CASES)
def test_chroma_equals_the_real_extractor(case):
    audio = np.load(REFERENCE / f"{case}.input32k.npy")
    expected = np.load(REFERENCE / f"{case}.chroma.npy")[0]
    # the extractor keeps the first 30 s; scoretrack cuts each window to its own span before calling
    got = melody.chroma(audio[: 30 * melody.SAMPLE_RATE])
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("samples", [100, 16383, 16384, 32000, 960000])
def test_chroma_shape_and_one_hot(samples):
    rng = np.random.default_rng(0)
    got = melody.chroma(rng.standard_normal(samples).astype(np.float32))
    assert got.shape == (melody.chroma_frame_count(samples), 12)
    assert (got.sum(axis=1) == 1).all()


def test_thirty_seconds_is_the_conditioner_limit():
    assert melody.chroma_frame_count(30 * melody.SAMPLE_RATE) == melody.MAX_CHROMA_FRAMES


def test_chroma_follows_pitch():
    t = np.arange(melody.SAMPLE_RATE) / melody.SAMPLE_RATE
    a4 = melody.chroma(np.sin(2 * np.pi * 440 * t).astype(np.float32))
    c5 = melody.chroma(np.sin(2 * np.pi * 523.25 * t).astype(np.float32))
    assert a4.argmax(1)[3] != c5.argmax(1)[3]


def test_harmonic_keeps_shape_and_removes_clicks():
    rng = np.random.default_rng(1)
    t = np.arange(2 * 32000) / 32000
    tone = np.sin(2 * np.pi * 330 * t)
    clicks = np.zeros_like(t)
    clicks[::8000] = 5.0
    mixed = (tone + clicks + 0.01 * rng.standard_normal(t.size)).astype(np.float32)[None]
    kept = melody.harmonic(mixed, sample_rate=32000)
    assert kept.shape == mixed.shape
    assert np.abs(kept).max() < np.abs(mixed).max() / 2
