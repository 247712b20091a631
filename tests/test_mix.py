"""Crossfades, speech detection on real recordings, ducking depth, loudness and true peak."""

from pathlib import Path

import numpy as np
import pytest

from conftest import MEDIA, MUSIC, SPEECH
from scoretrack import media, mix
from scoretrack.errors import BadParameterError
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
    result = mix.mix(music, original, music_rate=RATE, sample_rate=RATE,
                     options=MixOptions(depth_db=depth, fade_in_s=0, fade_out_s=0))
    gain_db = 20 * np.log10(result.gain)
    # JFK speaks without a break for the first ~2.2 s of each placement
    during = np.concatenate([gain_db[int(2.5 * RATE) : int(4.2 * RATE)], gain_db[int(12.5 * RATE) : int(14.2 * RATE)]])
    pause = gain_db[int(8.5 * RATE) : int(10.5 * RATE)]
    assert pause.mean() - during.mean() >= -depth - 1
    assert result.loudness_lufs == pytest.approx(-14.0, abs=0.5)
    assert result.true_peak_dbtp <= -1.0 + 1e-6
    assert mix.true_peak_db(result.audio, sample_rate=RATE) <= -1.0 + 1e-6
    # the ducked stem carries the ducking, the dry stem does not
    for stem, ratio in ((result.ducked, 10 ** (depth / 20)), (result.music, 1.0)):
        under, free = (np.abs(stem[:, int(a * RATE) : int(b * RATE)]).max() for a, b in ((2.5, 4), (9, 10)))
        assert under / free == pytest.approx(ratio, rel=0.05)


@pytest.mark.parametrize("target_lufs, mode", [(-30.0, "mix"), (-40.0, "mix"), (-30.0, "replace"), (-30.0, "music")])
def test_the_stems_leave_out_only_the_loudness_gain(target_lufs, mode):
    """One balance: the mix is the original (in mix mode) plus the ducked stem, times ``loudness_gain_db``
    (the limiter idle at these levels); the stems sit at the level that goes with the untouched original."""
    music, original = lay_speech_on_clip()
    result = mix.mix(music, original, music_rate=RATE, sample_rate=RATE,
                     options=MixOptions(target_lufs=target_lufs, mode=mode))
    unscaled = result.ducked + (original if mode == "mix" else 0)
    np.testing.assert_allclose(result.audio, unscaled * 10 ** (result.loudness_gain_db / 20), rtol=1e-4, atol=1e-6)
    assert result.loudness_lufs == pytest.approx(target_lufs, abs=0.1)


def test_music_is_already_down_when_a_word_starts():
    music, original = lay_speech_on_clip()
    result = mix.mix(music, original, music_rate=RATE, sample_rate=RATE, options=MixOptions(fade_in_s=0, fade_out_s=0))
    first_word = result.speech[0][0]
    assert 20 * np.log10(result.gain[int(first_word * RATE)]) <= -12 + 0.5
    assert 20 * np.log10(result.gain[int((first_word - 0.2) * RATE)]) > -1  # and not long before


def with_peaky_music(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A peaky square wave as the music, and the clip ``name``'s sound."""
    original = media.read_audio(MEDIA / name, sample_rate=RATE, channels=2)
    t = np.arange(original.shape[1]) / RATE
    music = np.stack([0.5 * np.sign(np.sin(2 * np.pi * 110 * t))] * 2).astype(np.float32)
    return music, original


@pytest.mark.parametrize("target, max_limiting_db", [(-14.0, 30.0), (-23.0, 0.5)])
def test_loudness_on_real_film_audio(target, max_limiting_db):
    """The target is met: at -23 LUFS within the default limiting, at -14 with the limiter let take what it needs."""
    music, original = with_peaky_music("his_girl_friday_dialogue.mp4")
    result = mix.mix(music, original, music_rate=RATE, sample_rate=RATE,
                     options=MixOptions(target_lufs=target, max_limiting_db=max_limiting_db))
    assert result.loudness_lufs == pytest.approx(target, abs=0.1)
    assert mix.integrated_loudness(result.audio, sample_rate=RATE) == pytest.approx(result.loudness_lufs, abs=0.01)
    assert result.true_peak_dbtp <= -1.0 + 1e-6
    assert mix.true_peak_db(result.audio, sample_rate=RATE) <= -1.0 + 1e-6
    assert np.abs(result.audio).max() < 1.0


@pytest.mark.parametrize("max_limiting_db", [0.0, 0.5, 2.0])
def test_the_limiter_takes_at_most_its_bound_and_the_mix_stays_quieter_instead(max_limiting_db):
    """Reaching -14 LUFS would take 5.3 dB off the peaks of GRID's talking head: the limiter takes no more
    than its bound, so the mix is the original plus the ducked music times one gain within the bound, under
    the ceiling, and quieter than the target instead."""
    music, original = with_peaky_music("grid_bbaf2n_speech.mpg")
    unbounded = mix.mix(music, original, music_rate=RATE, sample_rate=RATE, options=MixOptions(max_limiting_db=30.0))
    result = mix.mix(music, original, music_rate=RATE, sample_rate=RATE,
                     options=MixOptions(max_limiting_db=max_limiting_db))
    assert limiting_db(unbounded, original) > 3  # the target alone would take more than any bound here
    assert limiting_db(result, original) == pytest.approx(max_limiting_db, abs=0.1)
    assert result.true_peak_dbtp <= -1.0 + 1e-6 and mix.true_peak_db(result.audio, sample_rate=RATE) <= -1.0 + 1e-6
    assert mix.integrated_loudness(result.audio, sample_rate=RATE) == pytest.approx(result.loudness_lufs, abs=0.01)
    assert result.loudness_lufs < -14.0 - 2.0
    assert unbounded.loudness_lufs == pytest.approx(-14.0, abs=0.1)


def limiting_db(result, original: np.ndarray) -> float:
    """The most the limiter took off: the mix against the original plus the ducked music times the loudness gain
    (none of it ever louder), sample by sample where there is sound."""
    unlimited = (original + result.ducked) * 10 ** (result.loudness_gain_db / 20)
    loud = np.abs(unlimited) > 1e-3
    ratio = result.audio[loud] / unlimited[loud]
    assert ratio.max() <= 1 + 1e-4
    return float(-20 * np.log10(ratio.min()))


@pytest.mark.parametrize("original", [None, "silent", "nan"])
@pytest.mark.parametrize("mode", ["mix", "replace", "music"])
def test_silent_or_missing_original_gives_finite_music_at_target(original, mode):
    t = np.arange(3 * RATE) / RATE
    music = np.stack([0.1 * np.sin(2 * np.pi * 330 * t)] * 2).astype(np.float32)
    source = {None: None, "silent": np.zeros_like(music), "nan": np.zeros_like(music)}[original]
    if original == "nan":
        music = music.copy()
        music[0, 100] = np.nan
    result = mix.mix(music, source, music_rate=RATE, sample_rate=RATE, options=MixOptions(mode=mode))
    assert np.isfinite(result.audio).all()
    assert result.loudness_lufs == pytest.approx(-14.0, abs=0.5)


def test_all_silent_stays_silent_and_finite():
    result = mix.mix(np.zeros((1, 32000), np.float32), np.zeros((2, RATE), np.float32), music_rate=32000, sample_rate=RATE)
    assert np.isfinite(result.audio).all() and not result.audio.any()
    assert result.loudness_lufs == float("-inf")


def test_fades_shape_the_music_ends():
    faded = mix.fade_edges(np.ones((1, RATE * 4), np.float32), sample_rate=RATE, fade_in_s=1.0, fade_out_s=2.0)
    assert faded[0, 0] < 0.01 and faded[0, -1] < 0.01 and faded[0, 2 * RATE - 10] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("field,value", [
    ("mode", "loud"), ("depth_db", 3), ("depth_db", float("nan")), ("depth_db", -100), ("attack_ms", -1),
    ("attack_ms", float("inf")), ("release_ms", float("nan")), ("hold_ms", 1e9), ("lookahead_ms", float("-inf")),
    ("vad_threshold", 1.5), ("vad_threshold", float("nan")), ("target_lufs", 5), ("target_lufs", float("nan")),
    ("true_peak_dbtp", 1), ("true_peak_dbtp", float("nan")), ("music_level_db", float("nan")),
    ("music_level_db", float("inf")), ("music_level_db", 10000), ("fade_in_s", float("nan")), ("fade_out_s", 1e6),
])
def test_bad_mix_options_are_named(field, value):
    with pytest.raises(BadParameterError, match=f"^{field}="):
        MixOptions(**{field: value}).validate()


def test_bad_option_message_gives_the_range():
    with pytest.raises(BadParameterError) as caught:
        MixOptions(music_level_db=float("nan")).validate()
    assert str(caught.value) == "music_level_db=nan must be a finite number in [-60, 20] dB"


@pytest.mark.parametrize("field,value", [("depth_db", float("nan")), ("music_level_db", float("inf")),
                                         ("fade_in_s", float("nan")), ("music_level_db", 10000)])
def test_mix_refuses_options_that_would_wreck_the_soundtrack(field, value):
    """Issue 9: these passed validation and silenced the music, or raised deep inside."""
    music, original = lay_speech_on_clip()
    with pytest.raises(BadParameterError, match=field):
        mix.mix(music, original, music_rate=RATE, sample_rate=RATE, options=MixOptions(**{field: value}))


def test_sample_clip_speech_is_found(tmp_path, monkeypatch):
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", ["make_sample.py", str(tmp_path / "sample.mp4")])
    runpy.run_path(str(Path(__file__).resolve().parents[1] / "samples" / "make_sample.py"), run_name="__main__")
    regions = mix.speech_regions(mix.detect_speech(media.read_audio(tmp_path / "sample.mp4", sample_rate=RATE), sample_rate=RATE))
    assert len(regions) == 2
    for (start, end), (want_start, want_end) in zip(regions, [(2.0, 4.0), (5.5, 7.0)]):
        assert abs(start - want_start) < 0.2 and abs(end - want_end) < 0.2


def test_true_peak_by_blocks_equals_the_annex_2_filter_on_the_whole_signal():
    from scipy import signal

    x = np.random.default_rng(0).standard_normal((2, 300_001)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (0, 11)))  # the meter lets the filter ring out past the end
    annex_2_fir = mix._TRUE_PEAK_PHASES.T.reshape(-1)  # the 48 taps in order: tap 4k + p is phase p's k-th
    whole = np.abs(signal.upfirdn(annex_2_fir, padded, 4, axis=1)).max()
    assert mix.true_peak_db(x, sample_rate=RATE) == pytest.approx(20 * np.log10(whole), abs=1e-6)
    sine = np.sin(2 * np.pi * 12000 * np.arange(4800) / RATE + np.pi / 4)[None]  # peaks between samples
    assert mix.true_peak_db(sine, sample_rate=RATE) > 20 * np.log10(np.abs(sine).max()) + 2.5


def read_all(path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Every channel of a file's first audio stream as decoded, with its ffmpeg channel names."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        names = tuple(c.name for c in stream.layout.channels)
        # the files are float PCM at RATE: take the decoded samples as they are (packed: interleaved)
        blocks = [f.to_ndarray() if f.format.is_planar else f.to_ndarray().reshape(-1, len(names)).T
                  for f in container.decode(stream)]
    return np.concatenate(blocks, axis=1).astype(np.float32), names


def make_surround(tmp_path: Path, layout: str = "5.1", seconds: float = 12.0) -> Path:
    """A surround file made from real recordings: jazz in FL/FR, speech in FC, strings in the rest."""
    import subprocess

    import imageio_ffmpeg

    streams = [("music_vibe_ace.ogg", "stereo"), ("speech_libri1_5703-47212-0000.ogg", "mono"),
               ("music_brahms_hungarian5.ogg", "stereo")]
    inputs = [arg for name, _ in streams for arg in ("-i", str(MEDIA / name))]
    chains = ";".join(f"[{i}:a]aresample={RATE},aformat=sample_fmts=fltp:channel_layouts={lay},atrim=0:{seconds}[a{i}]"
                      for i, (_, lay) in enumerate(streams))
    pan = {"5.1": "FL=c0|FR=c1|FC=c2|LFE=0.5*c3|BL=c3|BR=c4",
           "7.1": "FL=c0|FR=c1|FC=c2|LFE=0.5*c3|BL=c3|BR=c4|SL=0.5*c4|SR=0.5*c3"}[layout]
    out = tmp_path / f"surround_{layout}.wav"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *inputs, "-filter_complex",
                    f"{chains};[a0][a1][a2]amerge=inputs=3,pan={layout}|{pan}[o]", "-map", "[o]", "-c:a", "pcm_f32le",
                    str(out)], check=True)
    return out


@pytest.mark.parametrize("layout", ["5.1", "7.1"])
def test_downmix_is_libswresamples_matrix(tmp_path, layout):
    import av

    path = make_surround(tmp_path, layout)
    audio, names = read_all(path)
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=RATE)
        reference = np.concatenate([out.to_ndarray() for frame in container.decode(audio=0)
                                    for out in resampler.resample(frame)], axis=1)
    np.testing.assert_allclose(mix.downmix_matrix(names) @ audio[:, : reference.shape[1]], reference, atol=1e-6)
    # and downmix() resamples that, block by block, as resample_poly would the whole
    from scipy import signal

    whole = signal.resample_poly(mix.downmix_matrix(names) @ audio, 1, 3, axis=1)
    np.testing.assert_allclose(mix.downmix(audio, sample_rate=RATE, target_rate=16000, channel_names=names), whole,
                               atol=1e-6)


def test_a_lazy_downmix_reads_any_span_as_the_whole_downmix_has_it():
    rng = np.random.default_rng(3)
    audio = (0.3 * rng.standard_normal((6, 7 * RATE + 123))).astype(np.float32)
    names = ("FL", "FR", "FC", "LFE", "BL", "BR")
    whole = mix.downmix(audio, sample_rate=RATE, target_rate=32000, channel_names=names)
    lazy = mix.MonoDownmix(audio, sample_rate=RATE, target_rate=32000, channel_names=names)
    assert lazy.shape == whole.shape
    for start, stop in [(0, 1), (0, 32000 * 4), (12_345, 98_765), (whole.shape[1] - 700, whole.shape[1]),
                        (200_000, 10**9), (whole.shape[1], whole.shape[1] + 5)]:
        np.testing.assert_allclose(lazy[:, start:stop], whole[:, start:stop], atol=1e-6, rtol=0)  # BLAS order
    with pytest.raises(TypeError):
        lazy[0]


def test_surround_keeps_its_channels_and_the_dialogue_is_untouched(tmp_path):
    original, names = read_all(make_surround(tmp_path, "5.1"))
    rng = np.random.default_rng(1)
    music = (0.2 * rng.standard_normal((1, int(round(original.shape[1] * 32000 / RATE))))).astype(np.float32)
    result = mix.mix(music, original, music_rate=32000, sample_rate=RATE, channel_names=names)
    assert result.channel_names == names == ("FL", "FR", "FC", "LFE", "BL", "BR")
    assert result.audio.shape == original.shape
    assert result.speech  # the speech in FC was heard through the downmix
    for channel in ("FC", "LFE", "BL", "BR"):
        i = names.index(channel)
        assert np.corrcoef(result.audio[i], original[i])[0, 1] > 0.999
        gain = np.dot(result.audio[i], original[i]) / np.dot(original[i], original[i])
        assert np.abs(result.audio[i] - gain * original[i]).max() < 1e-3  # nothing else in it
    for channel in ("FL", "FR"):
        i = names.index(channel)
        added = result.audio[i] - gain * original[i]
        assert np.corrcoef(added, result.ducked[0])[0, 1] > 0.99  # the music went here
    assert result.true_peak_dbtp <= -1.0 + 1e-6
    assert mix.integrated_loudness(result.audio, sample_rate=RATE, channel_names=names) == pytest.approx(
        result.loudness_lufs, abs=0.01)


def test_blocks_equal_the_arrays_exactly():
    music, original = lay_speech_on_clip()
    music32 = mix.resample(music[:1], sample_rate=RATE, target_rate=32000, samples=20 * 32000)
    result = mix.mix(music32, original, music_rate=32000, sample_rate=RATE)
    blocks = list(result.blocks(block_samples=12_345))
    assert all(b[0].shape[1] == 12_345 for b in blocks[:-1])
    for which, array in enumerate((result.audio, result.music, result.ducked)):
        np.testing.assert_array_equal(np.concatenate([b[which] for b in blocks], axis=1), array)
    assert result.music.shape == result.ducked.shape == (1, 20 * RATE)  # mono music stays mono
    np.testing.assert_allclose(result.ducked, result.music * result.gain, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", SPEECH[:2] + MUSIC)
def test_block_wise_loudness_equals_pyloudnorm(name):
    import pyloudnorm

    audio = media.read_audio(MEDIA / name, sample_rate=RATE, channels=2, duration_s=30.0)
    expected = pyloudnorm.Meter(RATE).integrated_loudness(audio.T.astype(np.float64))
    assert mix.integrated_loudness(audio, sample_rate=RATE) == pytest.approx(expected, abs=0.1)


def test_surround_loudness_uses_bs1770_weights(tmp_path):
    import pyloudnorm

    audio, names = read_all(make_surround(tmp_path, "5.1"))
    order = [names.index(n) for n in ("FL", "FR", "FC", "BL", "BR")]  # pyloudnorm's L, R, C, Ls, Rs; no LFE
    expected = pyloudnorm.Meter(RATE).integrated_loudness(audio[order].T.astype(np.float64))
    assert mix.integrated_loudness(audio, sample_rate=RATE, channel_names=names) == pytest.approx(expected, abs=0.1)
    assert list(mix.loudness_weights(names)) == [1.0, 1.0, 1.0, 0.0, 1.41, 1.41]  # LFE out, surrounds 1.41


def test_fast_speech_probabilities_equal_silero_frame_by_frame():
    import torch

    audio = media.read_audio(MEDIA / "speech_libri1_5703-47212-0000.ogg", sample_rate=16000, duration_s=8.0)[0]
    fast, _ = mix._speech_probabilities(np.array_split(audio, 3), frames_per_call=100)
    model = mix._silero_model()
    model.reset_states()
    with torch.inference_mode():
        slow = [model(torch.from_numpy(np.pad(audio[i : i + 512], (0, max(0, i + 512 - len(audio))))), 16000).item()
                for i in range(0, len(audio), 512)]
    np.testing.assert_allclose(fast, slow, atol=1e-4)


def test_a_ceiling_lowered_for_the_encoder_may_go_below_the_options_range():
    """The delivery loop lowers the ceiling by the encoder's overshoot: from --true-peak -20, the lowest the
    options take, to -20.6, and the mix follows it (the options stay as given)."""
    music, original = with_peaky_music("grid_bbaf2n_speech.mpg")
    result = mix.mix(music, original, music_rate=RATE, sample_rate=RATE, options=MixOptions(true_peak_dbtp=-20.0))
    lowered = mix.with_ceiling(result, true_peak_dbtp=-20.6)
    assert lowered.true_peak_dbtp <= -20.6 + 1e-6 and mix.true_peak_db(lowered.audio, sample_rate=RATE) <= -20.6 + 1e-6
    assert lowered.loudness_lufs == pytest.approx(result.loudness_lufs - 0.6, abs=0.05)  # held by the limiter's bound
