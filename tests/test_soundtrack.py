"""The soundtrack as data: Scorer.soundtrack (arrays in and out) and the file pipeline built on it."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import MEDIA
from scoretrack import media
from scoretrack.errors import BadParameterError, UnreadableMediaError
from scoretrack.options import GenerationOptions, MixOptions, ScoreOptions
from scoretrack.plan import ClipRequest, SideOutputs

RATE = 48000
FAST = GenerationOptions(window_s=4.0, stride_s=2.5, seed=3)


def dialogue_under_silence(seconds: float = 9.0) -> np.ndarray:
    """JFK's speech from 2 s on, silence before: a clip whose original sound is dialogue with a pause."""
    words = media.read_audio(MEDIA / "speech_jfk.wav", sample_rate=RATE, channels=2, duration_s=seconds - 2)
    original = np.zeros((2, round(seconds * RATE)), np.float32)
    original[:, 2 * RATE :] = words
    return original


def test_soundtrack_returns_every_part_as_arrays(scorer):
    original = dialogue_under_silence()
    track = scorer.soundtrack(original, RATE, options=ScoreOptions(style="calm piano", generation=FAST))
    n = original.shape[1]
    assert track.sample_rate == RATE
    assert track.mix.shape == (2, n) and track.music.shape == (1, n) and track.ducked.shape == (1, n)
    assert track.gain.shape == (n,) and track.gain.max() <= 1.0
    np.testing.assert_allclose(track.ducked, track.music * track.gain, atol=1e-6)
    assert track.speech and track.speech[0][0] == pytest.approx(2.0, abs=0.3)
    assert len(track.seams) == track.windows - 1 and all(0 < s < 9 for s in track.seams)
    assert track.loudness_lufs == pytest.approx(-14, abs=0.5) and track.true_peak_dbtp <= -1 + 1e-6
    # the dialogue is in the mix, and the music is down under every word
    inside = np.zeros(n, bool)
    for start, end in track.speech:
        inside[int(start * RATE) : int(end * RATE)] = True
    assert np.corrcoef(track.mix[0, inside], original[0, inside])[0, 1] > 0.9
    assert 20 * np.log10(track.gain[inside]).max() <= -11.5


def test_soundtrack_of_picture_without_sound(scorer):
    track = scorer.soundtrack(None, RATE, duration_s=2.5, options=ScoreOptions(generation=FAST))
    assert track.mix.shape == (2, 120000) and np.abs(track.mix).max() > 0 and not track.speech


def test_soundtrack_resamples_and_keeps_exact_length(scorer):
    audio = media.read_audio(MEDIA / "speech_libri1_5703-47212-0000.ogg", sample_rate=16000, duration_s=3.3)
    track = scorer.soundtrack(audio, 16000, options=ScoreOptions(generation=FAST))
    assert track.mix.shape[1] == round(3.3 * RATE)


@pytest.mark.parametrize("bad", [dict(audio=None), dict(audio=np.full((2, 100), np.nan, np.float32)),
                                 dict(audio=np.zeros((9, 100), np.float32)), dict(sample_rate=0),
                                 dict(sample_rate=16000.5), dict(sample_rate=True), dict(sample_rate="16000"),
                                 dict(audio=np.zeros((2, 100), bool)), dict(audio=np.zeros((2, 100), complex)),
                                 dict(duration_s=-1.0), dict(duration_s=np.nan), dict(duration_s="4"),
                                 dict(channel_names=("FL",))])
def test_soundtrack_refuses_bad_arrays(scorer, bad):
    args = dict(audio=np.zeros((2, 4800), np.float32), sample_rate=RATE) | bad
    with pytest.raises(BadParameterError):
        scorer.soundtrack(args.pop("audio"), args.pop("sample_rate"), options=ScoreOptions(generation=FAST), **args)


SPEECH_16K = media.read_audio(MEDIA / "his_girl_friday_dialogue.mp4", sample_rate=16000, channels=2, duration_s=1.0)
PCM16 = np.round(SPEECH_16K * 32767).astype(np.int16)


@pytest.mark.parametrize("audio,sample_rate,duration_s,floats", [
    (PCM16, 16000, None, PCM16 / 32768), (PCM16.astype(np.int32) << 16, 16000, None, PCM16 / 32768),
    (((PCM16 >> 8) + 128).astype(np.uint8), 16000, None, (PCM16 >> 8) / 128), (PCM16[0], 16000, None, PCM16[:1] / 32768),
    (SPEECH_16K, np.int64(16000), np.int64(1), SPEECH_16K), (SPEECH_16K, 16000.0, np.float32(1.0), SPEECH_16K),
    (SPEECH_16K.astype(np.float64), np.uint16(16000), 1, SPEECH_16K),
])
def test_arrays_as_users_have_them(audio, sample_rate, duration_s, floats):
    # integer PCM is scaled by its type's full scale (the old code took int16 samples for floats), and
    # numpy numbers and integral floats are taken for the rate and the length (the old code refused them)
    from scoretrack.pipeline import clip_audio

    clip = clip_audio(audio, sample_rate, duration_s=duration_s, options=ScoreOptions())
    expected = clip_audio(floats.astype(np.float32), 16000, duration_s=1.0, options=ScoreOptions())
    assert clip.duration_s == 1.0 and type(clip.duration_s) is float
    np.testing.assert_allclose(clip.original, expected.original, atol=1e-6)
    assert 0.05 < np.abs(clip.original).max() <= 1  # the dialogue at its level, not 32768 times it


def test_file_pipeline_and_soundtrack_give_the_same_mix(scorer, tmp_path):
    source = tmp_path / "voiceover.wav"
    shutil.copy(MEDIA / "speech_jfk.wav", source)
    options = ScoreOptions(style="warm synth", generation=FAST)
    result = scorer.score(source, options=options)
    assert result.output == tmp_path / "voiceover.scored.wav"
    written, rate = soundfile.read(result.output, dtype="float32", always_2d=True)
    info = media.probe(source)
    track = scorer.soundtrack(media.read_audio(source, sample_rate=RATE, channels=None, duration_s=info.duration_s),
                              RATE, options=options)
    assert rate == RATE and written.shape == (round(info.duration_s * RATE), track.mix.shape[0])
    np.testing.assert_allclose(written.T, track.mix, atol=1 / 2**15)  # 16-bit PCM, as the source's


def decoded(path: Path) -> tuple[int, int, str]:
    """Samples a decoder gives (encoder delay and padding dropped), their rate and the channel layout."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples, stream.codec_context.sample_rate, stream.codec_context.layout.name


@pytest.mark.parametrize("name,layout", [("voice.mp3", "stereo"), ("voice.wav", "5.1(side)")])
def test_audio_inputs_are_scored_into_their_own_format_and_length(scorer, tmp_path, name, layout):
    # the old code wrote voice.scored.wav for every audio input: an mp3's 551 samples of encoder padding
    # longer than the decoded input, and a 5.1(side) WAV without its channel mask (read back as 5.1)
    from make_media import audio_file, surround

    source = tmp_path / name
    if layout == "stereo":
        audio_file(source, duration_s=1.6)  # libmp3lame at 44.1 kHz: 1105 samples of delay, then padding
    else:
        audio_file(source, "-c:a", "pcm_s24le", duration_s=1.6,
                   source=surround(tmp_path / "surround.mov", layout=layout, audio_codec="pcm_s16le"))
    samples, rate, source_layout = decoded(source)
    assert source_layout == layout
    result = scorer.score(source, options=ScoreOptions(generation=FAST))
    assert decoded(result.output) == (round(samples * RATE / rate), RATE, layout)
    assert result.output == tmp_path / f"{source.stem}.scored{source.suffix}"


def test_score_keeps_the_options_style_unless_style_is_given(scorer, tmp_path):
    source = tmp_path / "a.mp4"
    shutil.copy(MEDIA / "realshort_1s.mp4", source)
    kept = scorer.score(source, output=tmp_path / "kept.mp4", options=ScoreOptions(style="jazz brass", generation=FAST))
    replaced = scorer.score(source, output=tmp_path / "replaced.mp4", style="dark synth",
                            options=ScoreOptions(style="jazz brass", generation=FAST))
    assert kept.styles == ["jazz brass"] and replaced.styles == ["dark synth"]


def test_stems_are_24_bit_mono_and_exact_length(scorer, tmp_path):
    source = tmp_path / "friday.mp4"
    shutil.copy(MEDIA / "his_girl_friday_dialogue.mp4", source)
    result = scorer.score(source, options=ScoreOptions(generation=FAST), stems=True)
    n = round(media.probe(source).duration_s * RATE)
    ducked, dry = soundfile.info(str(result.side["music"])), soundfile.info(str(result.side["music-dry"]))
    for stem in (ducked, dry):
        assert (stem.samplerate, stem.channels, stem.frames, stem.subtype) == (RATE, 1, n, "PCM_24")
    wet, _ = soundfile.read(result.side["music"], dtype="float32")
    unducked, _ = soundfile.read(result.side["music-dry"], dtype="float32")
    assert np.abs(wet).max() < np.abs(unducked).max()  # the dialogue ducked the one, not the other


def test_batch_results_keep_the_exception_and_the_facts(scorer, tmp_path):
    good = tmp_path / "good.mp4"
    shutil.copy(MEDIA / "realshort_1s.mp4", good)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\0" * 1000)
    options = ScoreOptions(generation=FAST)
    results = scorer.score_many([ClipRequest(good, None, options), ClipRequest(broken, None, options)],
                                side=SideOutputs(stems=True))
    assert [r.status for r in results] == ["ok", "failed"]
    assert isinstance(results[1].exception, UnreadableMediaError) and results[1].error_type == "UnreadableMediaError"
    again = scorer.score_many([ClipRequest(good, None, options)], side=SideOutputs(stems=True))[0]
    assert again.status == "skipped" and again.duration_s == pytest.approx(results[0].duration_s)
    assert again.side == results[0].side and all(Path(p).exists() for p in again.side.values())


def test_rerun_asking_for_more_side_files_makes_only_those(scorer, tmp_path):
    source = tmp_path / "a.mp4"
    shutil.copy(MEDIA / "his_girl_friday_dialogue.mp4", source)
    options = ScoreOptions(generation=FAST, mix=MixOptions(depth_db=-15))
    first = scorer.score(source, options=options)
    stamp = first.output.stat().st_mtime_ns
    second = scorer.score(source, options=options, stems=True, plot=True)
    assert second.status == "ok" and second.output.stat().st_mtime_ns == stamp
    assert second.side["music"].exists() and second.side["plot"].read_bytes()[:4] == b"\x89PNG"
    assert scorer.score(source, options=options, stems=True, plot=True).status == "skipped"


def test_samples_by_channels_arrays_are_taken_as_soundfile_gives_them(scorer):
    """soundfile, scipy.io.wavfile and moviepy's to_soundarray give (samples, channels)."""
    audio = dialogue_under_silence(5.0)
    options = ScoreOptions(generation=FAST)
    ours = scorer.soundtrack(audio.T, RATE, options=options)
    theirs = scorer.soundtrack(audio, RATE, options=options)
    assert ours.mix.shape == theirs.mix.shape == (2, audio.shape[1])
    assert ours.speech == theirs.speech and ours.speech
    np.testing.assert_allclose(ours.mix, theirs.mix, atol=1e-5)
