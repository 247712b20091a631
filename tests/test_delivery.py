"""What is delivered: the source's layout (mono stays mono), lossless sound kept lossless, and the true
peak and loudness of the encoded file itself."""

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import av
import pytest
import soundfile

from conftest import MEDIA
from test_media import video_packets
from make_media import FFMPEG, audio_file, ffmpeg, video
from scoretrack import Scorer, media
from scoretrack.options import GenerationOptions, ScoreOptions, parse_audio_codec
from scoretrack.plan import SHORTFALL_NOTE_LU, SideOutputs, read_sidecar

FAST = ScoreOptions(style="calm", generation=GenerationOptions(window_s=4, stride_s=2.5))


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


LOSSLESS_SOURCES = {  # name: (builder args, output codec, bit depth)
    "prores.mov, 24-bit PCM": (("prores.mov", "-c:v", "prores_ks", "-profile:v", "0"),
                               ("-c:a", "pcm_s24le"), "pcm_s24le", 24),
    "h264.mkv, 24-bit FLAC": (("flac.mkv", "-c:v", "libx264", "-preset", "ultrafast"),
                              ("-c:a", "flac", "-sample_fmt", "s32"), "flac", 24),
    "alac.m4a, 24-bit ALAC": (("alac.m4a",), ("-c:a", "alac", "-sample_fmt", "s32p"), "alac", 24),
    "16-bit wav": (("pcm16.wav",), ("-c:a", "pcm_s16le"), "pcm_s16le", 16),
}


def lossless_source(tmp_path: Path, case: str) -> Path:
    (name, *video_args), audio, _, _ = LOSSLESS_SOURCES[case]
    if len(video_args):
        return video(tmp_path / name, *video_args, audio=audio)
    return audio_file(tmp_path / name, *audio, duration_s=1.0)


@pytest.mark.parametrize("case", list(LOSSLESS_SOURCES))
def test_lossless_sound_stays_lossless_with_its_bit_depth(scorer, tmp_path, case):
    source = lossless_source(tmp_path, case)
    _, _, codec, bits = LOSSLESS_SOURCES[case]
    result = scorer.score(source, options=FAST)
    assert result.status == "ok" and result.output.suffix == source.suffix
    info = media.probe(result.output)
    assert (info.audio[0].codec, info.audio[0].bit_depth) == (codec, bits)
    if info.is_video:
        assert video_packets(result.output) == video_packets(source)


@pytest.mark.parametrize("codec, output, expected", [("aac:256k", "o.mov", "aac"), ("alac", "o.mp4", "alac"),
                                                      ("opus", "o.mkv", "opus"), ("pcm", "o.mkv", "pcm_s24le")])
def test_audio_codec_chooses_the_sound(scorer, tmp_path, codec, output, expected):
    source = lossless_source(tmp_path, "prores.mov, 24-bit PCM") if output == "o.mov" else video(
        tmp_path / "h264.mp4", "-c:v", "libx264", "-preset", "ultrafast")
    name, bit_rate = parse_audio_codec(codec)
    options = dataclasses.replace(FAST, audio_codec=name, audio_bitrate=bit_rate)
    result = scorer.score(source, output=tmp_path / output, options=options)
    assert result.status == "ok"
    with av.open(str(result.output)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.codec.canonical_name == expected
        if bit_rate:
            assert stream.bit_rate == pytest.approx(bit_rate, rel=0.15)
    assert video_packets(result.output) == video_packets(source)


@pytest.mark.parametrize("args, words", [
    (["-o", "{tmp}/x.mp4", "--audio-codec", "pcm"], ["--audio-codec pcm", ".mp4", ".mov"]),
    (["-o", "{tmp}/x.webm", "--audio-codec", "aac"], ["--audio-codec aac", ".webm", "opus"]),
    (["--audio-codec", "flac:192k"], ["--audio-codec flac:192k", "bit rate"]),
    (["--audio-codec", "wma"], ["--audio-codec wma", "pcm, flac, alac"]),
])
def test_a_codec_the_output_cannot_hold_is_refused_before_the_model_loads(tmp_path, tiny_model_dir, args, words):
    source = shutil.copy(MEDIA / "realshort_1s.mp4", tmp_path / "clip.mp4")
    done = subprocess.run([sys.executable, "-m", "scoretrack.cli", str(source), "--model", str(tiny_model_dir),
                           *[arg.format(tmp=tmp_path) for arg in args]], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "loading model" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert all(word in line for word in words), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def ffmpeg_levels(path: Path) -> tuple[float, float]:
    """FFmpeg's integrated loudness (LUFS) and true peak (dBTP) of ``path``, from ``ebur128=peak=true``'s
    summary (printed to 0.1)."""
    done = subprocess.run([FFMPEG, "-hide_banner", "-nostats", "-i", str(path), "-map", "0:a:0", "-af",
                           "ebur128=peak=true", "-f", "null", "-"], capture_output=True, text=True, check=True)
    summary = done.stderr[done.stderr.rindex("Summary:"):]
    return (float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1)),
            float(re.search(r"Peak:\s+(-?[\d.]+) dBFS", summary).group(1)))


@pytest.mark.parametrize("name, seconds, output, max_limiting_db", [
    ("speech_libri1_5703-47212-0000.ogg", (0, 4), "o.ogg", 0.5), ("music_vibe_ace.ogg", (20, 24), "o.ogg", 30.0),
    ("music_brahms_hungarian5.ogg", (20, 24), "o.m4a", 0.5), ("his_girl_friday_dialogue.mp4", (0, 4), "o.mp4", 0.5)])
def test_the_true_peak_and_loudness_reported_are_the_delivered_files(scorer, tmp_path, name, seconds, output,
                                                                     max_limiting_db):
    """Under the ceiling as encoded, the figures the file's; the loudness target met where the limiter may take
    what it needs, else the clip as loud as its bound allows, and a note says how far under it is."""
    source = tmp_path / f"source{Path(name).suffix}"
    start, end = seconds
    ffmpeg("-ss", start, "-i", MEDIA / name, "-t", end - start, "-s", "160x120", "-c:v", "libx264", "-preset",
           "ultrafast", "-c:a", "aac", source) if source.suffix == ".mp4" else ffmpeg(
        "-ss", start, "-i", MEDIA / name, "-t", end - start, "-vn", "-c:a", "libopus", source)
    options = dataclasses.replace(FAST, mix=dataclasses.replace(FAST.mix, max_limiting_db=max_limiting_db))
    result = scorer.score(source, output=tmp_path / output, options=options)
    lufs, peak = ffmpeg_levels(result.output)
    ceiling, target = FAST.mix.true_peak_dbtp, FAST.mix.target_lufs
    assert peak <= ceiling + 0.1, f"delivered true peak {peak} dBTP over the ceiling {ceiling}"
    assert abs(result.true_peak_dbtp - peak) <= 0.1 + 0.05  # ffmpeg prints to 0.1
    assert abs(result.loudness_lufs - lufs) <= 0.1 + 0.05 and lufs <= target + 0.3
    short = [note for note in result.notes if f"under the {target:g} LUFS target" in note]
    if max_limiting_db > 20:
        assert abs(lufs - target) <= 0.3 and not short
    else:
        assert bool(short) == (result.loudness_lufs <= target - SHORTFALL_NOTE_LU), (result.loudness_lufs, short)
    record = read_sidecar(result.output)
    assert (record["loudness_lufs"], record["true_peak_dbtp"]) == (result.loudness_lufs, result.true_peak_dbtp)


def test_the_command_offers_the_codecs_media_writes():
    from scoretrack.options import AUDIO_CODEC_NAMES, LOSSY_AUDIO_CODECS

    assert set(AUDIO_CODEC_NAMES) == {"auto", *media.LOSSY_ENCODERS, *media.LOSSLESS_CODECS}
    assert set(LOSSY_AUDIO_CODECS) == set(media.LOSSY_ENCODERS)
