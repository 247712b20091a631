"""What is delivered: the source's layout (mono stays mono), lossless sound kept lossless, and the true
peak and loudness of the encoded file itself."""

import shutil
from pathlib import Path

import av
import pytest
import soundfile

from conftest import MEDIA
from make_media import video
from scoretrack import Scorer
from scoretrack.options import GenerationOptions, ScoreOptions
from scoretrack.plan import SideOutputs

FAST = ScoreOptions(style="calm", generation=GenerationOptions(window_s=4, stride_s=2.5))


def audio_stream(path: Path) -> av.audio.stream.AudioStream:
    with av.open(str(path)) as container:
        return container.streams.audio[0]


def channels(path: Path) -> tuple[int, str]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return stream.codec_context.channels, stream.codec_context.codec.name


def test_a_mono_wav_is_scored_to_a_mono_wav_with_mono_stems(scorer, tmp_path):
    source = tmp_path / "jfk.wav"
    with soundfile.SoundFile(MEDIA / "speech_jfk.wav") as full:  # its first 3 s
        soundfile.write(source, full.read(3 * full.samplerate), full.samplerate, subtype=full.subtype)
    [result] = scorer.score_many([(source, None, FAST)], side=SideOutputs(stems=True))
    assert result.status == "ok", result.error
    assert soundfile.info(result.output).channels == 1
    assert [soundfile.info(result.side[name]).channels for name in ("music", "music-dry")] == [1, 1]
    assert not result.notes


def test_a_mono_video_gets_mono_aac(scorer, tmp_path):
    source = video(tmp_path / "mono.mp4", "-c:v", "libx264", "-preset", "ultrafast",
                   audio=("-c:a", "aac", "-ac", "1"))
    result = scorer.score(source, options=FAST)
    assert result.status == "ok"
    assert channels(result.output) == (1, "aac")


def test_stereo_music_makes_a_mono_source_stereo_and_says_so(tmp_path):
    from scoretrack.testing import write_tiny_model

    model = write_tiny_model(tmp_path / "stereo-model", family="stereo-melody")
    source = video(tmp_path / "mono.mp4", "-c:v", "libx264", "-preset", "ultrafast",
                   audio=("-c:a", "aac", "-ac", "1"))
    [result] = Scorer(str(model)).score_many([(source, None, FAST)])
    assert result.status == "ok", result.error
    assert channels(result.output) == (2, "aac")
    assert any("mono sound scored in stereo" in note for note in result.notes)
