"""moviepy: a clip with its soundtrack, made from its own audio, no picture rendered, nothing left behind."""

import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import MEDIA
from scoretrack import media
from scoretrack.integrations import READ_BLOCK, music_clip, read_clip_audio, with_soundtrack
from scoretrack.options import GenerationOptions, ScoreOptions

FAST = ScoreOptions(style="calm piano", generation=GenerationOptions(window_s=4.0, stride_s=2.5, seed=2))


@pytest.fixture(scope="module")
def talking_clip(tmp_path_factory) -> Path:
    """Real footage with JFK's speech laid under it from 1.5 s on (44.1 kHz stereo AAC)."""
    path = tmp_path_factory.mktemp("moviepy") / "talking.mp4"
    speech = media.read_audio(MEDIA / "speech_jfk.wav", sample_rate=44100, channels=2, duration_s=5.2)
    audio = np.zeros((2, round(6.7 * 44100)), np.float32)
    audio[:, round(1.5 * 44100) :] = speech
    with av.open(str(MEDIA / "noaudio_bug_video_640.mp4")) as source, av.open(str(path), "w") as out:
        video = out.add_stream_from_template(source.streams.video[0])
        sound = out.add_stream("aac", rate=44100, layout="stereo")
        for packet in source.demux(source.streams.video[0]):
            if packet.size:
                packet.stream = video
                out.mux(packet)
        for start in range(0, audio.shape[1], 4410):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, start : start + 4410]), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = 44100, start, Fraction(1, 44100)
            out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    return path


def test_reads_the_clips_audio_in_blocks_equal_to_a_pyav_decode():
    from moviepy import VideoFileClip

    path = MEDIA / "his_girl_friday_dialogue.mp4"  # 44.1 kHz: no resampling on either side
    with VideoFileClip(str(path)) as clip:
        audio, rate = read_clip_audio(clip)
    assert rate == 44100 and audio.shape[1] > 2 * READ_BLOCK  # longer than moviepy's safe single read
    reference = media.read_audio(path, sample_rate=44100, channels=None, duration_s=audio.shape[1] / 44100)
    # moviepy reads 16-bit PCM from ffmpeg; PyAV gives the decoder's floats
    np.testing.assert_allclose(audio, reference, atol=3 / 32768)


def test_with_soundtrack_keeps_the_dialogue_and_renders_no_picture(scorer, talking_clip, monkeypatch, tmp_path):
    from moviepy import VideoClip, VideoFileClip

    def no_render(*args, **kwargs):
        raise AssertionError("with_soundtrack must not render the picture")

    monkeypatch.setattr(VideoClip, "write_videofile", no_render)
    private_temp = tmp_path / "temp"
    private_temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_temp))  # other processes share the real one
    with VideoFileClip(str(talking_clip)) as clip:
        original, rate = read_clip_audio(clip)
        scored = with_soundtrack(clip, scorer, options=FAST)
        assert scored.duration == pytest.approx(clip.duration)
        mixed, mixed_rate = read_clip_audio(scored)
    assert list(private_temp.iterdir()) == []
    track = scorer.soundtrack(original, rate, options=FAST)
    assert track.speech, "the test clip must hold detectable speech"
    mono = original.mean(axis=0)
    for start, end in track.speech:
        inside = slice(int(start * 48000), int(end * 48000))
        ours = mixed.mean(axis=0)[inside]
        theirs = np.interp(np.arange(inside.start, inside.start + ours.size) / 48000,
                           np.arange(mono.size) / rate, mono)
        assert np.corrcoef(ours, theirs)[0, 1] >= 0.9
    np.testing.assert_allclose(mixed, track.mix, atol=1e-4)  # the same soundtrack as the array API


@pytest.mark.parametrize("kind", ["subclip", "composite", "no audio"])
def test_with_soundtrack_on_other_clips(scorer, talking_clip, kind):
    from moviepy import ColorClip, CompositeVideoClip, VideoFileClip

    with VideoFileClip(str(talking_clip)) as clip:
        if kind == "subclip":
            target = clip.subclipped(1.0, 4.0)
        elif kind == "composite":
            target = CompositeVideoClip([clip, ColorClip(size=(64, 48), color=(200, 30, 30), duration=2).with_start(1)])
        else:
            target = ColorClip(size=(64, 48), color=(200, 30, 30), duration=1.5).with_fps(10)
        scored = with_soundtrack(target, scorer, options=FAST)
        music = music_clip(target, scorer, options=FAST)
        mixed, rate = read_clip_audio(scored)
        alone, _ = read_clip_audio(music)
    assert rate == 48000 and mixed.shape[1] == round(target.duration * 48000)
    assert alone.shape[1] == mixed.shape[1] and np.abs(alone).max() > 0  # moviepy hands mono out as two channels


def test_moviepys_own_types_are_taken_as_they_are_meant(scorer):
    # moviepy hands out int16 PCM (to_soundarray(quantize=True)) and numpy durations (concatenate_videoclips):
    # the old code took the int16 samples for floats, found no speech and ducked nothing
    from moviepy import AudioFileClip, ColorClip, concatenate_videoclips

    with AudioFileClip(str(MEDIA / "his_girl_friday_dialogue.mp4"), fps=16000) as clip:  # reads under 100,000
        dialogue = clip.subclipped(0, 3)
        pcm = dialogue.to_soundarray(nbytes=2, quantize=True).T
        floats = dialogue.to_soundarray().T
    assert pcm.dtype == np.int16
    reference = scorer.soundtrack(floats, 16000, options=FAST)
    assert reference.speech, "the test dialogue must hold detectable speech"
    track = scorer.soundtrack(pcm, 16000, options=FAST)
    np.testing.assert_allclose(np.array(track.speech), np.array(reference.speech), atol=0.05)
    assert np.abs(track.gain - reference.gain).max() < 0.01 and track.gain.min() < 0.3  # ducked, as the floats are
    pictures = concatenate_videoclips([ColorClip((32, 24), (0, 0, 0), duration=1).with_fps(10)] * 2)
    assert isinstance(pictures.duration, np.integer)
    assert read_clip_audio(music_clip(pictures, scorer, options=FAST))[0].shape == (2, 2 * 48000)


def test_with_soundtrack_on_an_audio_clip_gives_the_mix(scorer):
    """An AudioFileClip has no audio to replace (it once raised AttributeError: no with_audio): it gives the mix,
    its dialogue with the music under it, as an audio clip of its length."""
    from moviepy import AudioClip, AudioFileClip

    with AudioFileClip(str(MEDIA / "speech_jfk.wav")) as clip:
        voice = clip.subclipped(0, 2.5)
        scored = with_soundtrack(voice, scorer, options=FAST)
        music = music_clip(voice, scorer, options=FAST)
        original, _ = read_clip_audio(voice)
    mixed, rate = read_clip_audio(scored)
    alone, _ = read_clip_audio(music)
    assert isinstance(scored, AudioClip) and rate == 48000 and mixed.shape[1] == alone.shape[1] == 2.5 * 48000
    assert np.abs(mixed - alone).max() > 0.01  # the dialogue is in the mix, not in the music alone
