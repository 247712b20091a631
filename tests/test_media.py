"""Probe, read and mux on every real clip in ../shared/media, and the bad-input matrix."""

import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import MEDIA, SPEECH, VIDEOS, sha256
from scoretrack import media
from scoretrack.errors import BadParameterError, OutputExistsError, ScoretrackError, UnreadableMediaError


def decoded_video_end(path: Path) -> float:
    """End of the last video frame by decoding every frame (independent of probe's packet walk)."""
    with av.open(str(path)) as container:
        stream = next(s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic)
        ends = [(f.pts + (f.duration or 0)) * f.time_base for f in container.decode(stream) if f.pts is not None]
        starts = sorted(float(f) for f in ends)
    return starts[-1]


def video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        stream = next(s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic)
        return [bytes(p) for p in container.demux(stream) if p.size]


def audio_end(path: Path, index: int = 0) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[index]
        end = 0.0
        for frame in container.decode(stream):
            end = max(end, float(frame.pts * frame.time_base) + frame.samples / frame.sample_rate)
    return end


@pytest.mark.parametrize("name", VIDEOS)
def test_probe_duration_is_video_end(name):
    info = media.probe(MEDIA / name)
    frame = 1 / info.video.frame_rate
    # decoding may drop a frame hidden by an edit list; the packet walk is within one frame of it
    assert abs(info.video.end_s - decoded_video_end(MEDIA / name)) <= frame + 1e-6
    assert info.duration_s == info.video.end_s - info.video.start_s and info.start_s == info.video.start_s
    assert info.video.frame_count >= 2


def test_probe_quirks():
    assert media.probe(MEDIA / "edge_no_duration_vp9_opus.webm").duration_s == pytest.approx(4.939, abs=0.002)
    assert media.probe(MEDIA / "ipad_IMG_0034_rot180.MOV").video.rotation in (180.0, -180.0)
    assert media.probe(MEDIA / "his_girl_friday_dialogue.mp4").audio[0].index == 0  # audio first
    assert not media.probe(MEDIA / "noaudio_cockatoo_yuv420.mp4").has_audio
    tos = media.probe(MEDIA / "tos_battle_clip_70s.webm")
    assert tos.duration_s == pytest.approx(70.458, abs=0.002)  # video end, not the longer audio


@pytest.mark.parametrize("name", VIDEOS)
@pytest.mark.parametrize("rate,channels", [(32000, 1), (48000, 2)])
def test_read_audio_is_exactly_the_video_length(name, rate, channels):
    info = media.probe(MEDIA / name)
    audio = media.read_audio(MEDIA / name, sample_rate=rate, channels=channels)
    assert audio.shape == (channels, round(info.duration_s * rate))
    assert audio.dtype == np.float32 and np.isfinite(audio).all()
    if not info.has_audio:
        assert not audio.any()


def test_read_audio_pads_short_audio_and_downmixes():
    # 48 kHz mono AAC with a 155 ms gap in its timestamps after the first frame (next frame at sample
    # 8471), ending 2.261 s of samples later: each frame lands where its timestamp puts it
    path = MEDIA / "edge_fire2_audio_shorter.mp4"
    audio = media.read_audio(path, sample_rate=48000)
    expected = np.zeros_like(audio)
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            block = frame.to_ndarray()[:, : max(expected.shape[1] - frame.pts, 0)]
            expected[:, frame.pts : frame.pts + block.shape[1]] = block
    np.testing.assert_allclose(audio, expected, atol=1e-6)
    assert audio[:, 10_600:].any()
    stereo = media.read_audio(MEDIA / "big_buck_bunny_0_30.webm", sample_rate=16000, channels=2)
    mono = media.read_audio(MEDIA / "big_buck_bunny_0_30.webm", sample_rate=16000, channels=1)
    # libswresample's standard matrix, as ffmpeg -ac 1 does: (L + R) / sqrt(2), not the mean
    np.testing.assert_allclose(mono[0], stereo.sum(axis=0) * np.sqrt(0.5), atol=1e-6)


def test_read_audio_of_an_hour_long_timeline_stays_small():
    # memory follows the audio: an hour at 8 kHz mono is 115 MB of float32 and nothing more
    audio = media.read_audio(MEDIA / "speech_jfk.wav", sample_rate=8000, duration_s=3600.0)
    assert audio.shape == (1, 8000 * 3600)
    assert not audio[:, 12 * 8000 :].any()


@pytest.mark.parametrize("name", VIDEOS)
def test_mux_round_trip_copies_video_and_fits_audio(name, tmp_path):
    source = MEDIA / name
    info = media.probe(source)
    out = tmp_path / f"out{media.default_output_extension(info)}"
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(media.sample_count(info.duration_s, 48000)) / 48000)).astype(np.float32)
    before = sha256(source)
    media.mux(source, np.stack([tone, tone]), sample_rate=48000, output=out)
    assert sha256(source) == before
    assert video_packets(out) == video_packets(source)
    written = media.probe(out)
    assert written.duration_s == pytest.approx(info.duration_s, abs=0.002)
    assert written.video.rotation == info.video.rotation
    codec_frame = 1024 / 48000 if out.suffix.lower() in (".mp4", ".mov") else 0.02
    assert abs(audio_end(out) - info.duration_s) <= codec_frame + 1e-3
    back = media.read_audio(out, sample_rate=48000)
    mid = slice(len(tone) // 4, len(tone) // 2)
    assert np.corrcoef(back[0, mid], tone[mid])[0, 1] > 0.99  # the tone, in place on the timeline


def test_mux_keeps_original_audio_as_second_disabled_track(tmp_path):
    source = MEDIA / "his_girl_friday_dialogue.mp4"
    silence = np.zeros((2, 48000), np.float32)
    out = media.mux(source, silence, sample_rate=48000, output=tmp_path / "o.mp4", keep_original_audio=True)
    with av.open(str(out)) as container, av.open(str(source)) as original:
        tracks = container.streams.audio
        assert len(tracks) == 2
        assert tracks[0].disposition & av.stream.Disposition.default
        assert not tracks[1].disposition & av.stream.Disposition.default
        assert [bytes(p) for p in container.demux(tracks[1]) if p.size] == \
               [bytes(p) for p in original.demux(original.streams.audio[0]) if p.size]  # copied, not re-encoded


def test_mux_refuses_codec_the_container_cannot_hold(tmp_path):
    with pytest.raises(BadParameterError, match=r"cannot hold vp8.*\.mkv"):
        media.mux(MEDIA / "tos_battle_clip_70s.webm", np.zeros((1, 100), np.float32), sample_rate=48000,
                  output=tmp_path / "o.mp4")
    assert list(tmp_path.iterdir()) == []


def test_mux_never_overwrites_unless_asked(tmp_path):
    source = MEDIA / "realshort_1s.mp4"
    out = tmp_path / "o.mp4"
    out.write_bytes(b"keep")
    audio = np.zeros((1, 48000), np.float32)
    with pytest.raises(OutputExistsError):
        media.mux(source, audio, sample_rate=48000, output=out)
    assert out.read_bytes() == b"keep"
    media.mux(source, audio, sample_rate=48000, output=out, overwrite=True)
    assert media.probe(out).video.frame_count == 36


def bad_inputs(tmp_path: Path) -> dict[str, Path]:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes((MEDIA / "crystal_cc0.mp4").read_bytes()[: 200_000])
    folder = tmp_path / "folder.mp4"
    folder.mkdir()
    image = tmp_path / "frame.png"
    with av.open(str(MEDIA / "realshort_1s.mp4")) as source:
        next(source.decode(video=0)).to_image().save(image)
    return {"missing": tmp_path / "missing.mp4", "directory": folder, "zero-byte": empty, "text": text,
            "truncated": truncated, "image": image}


@pytest.mark.parametrize("case", ["missing", "directory", "zero-byte", "text", "truncated", "image"])
def test_bad_input_gives_one_typed_one_line_error(case, tmp_path):
    path = bad_inputs(tmp_path)[case]
    listing = sorted(tmp_path.iterdir())
    with pytest.raises(UnreadableMediaError) as error:
        media.probe(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)
    with pytest.raises(ScoretrackError):
        media.mux(path, np.zeros((1, 10), np.float32), sample_rate=48000, output=tmp_path / "out.mp4")
    assert sorted(tmp_path.iterdir()) == listing  # nothing left behind


def test_audio_only_is_an_input_now(tmp_path):
    path = tmp_path / "speech.wav"
    shutil.copy(MEDIA / SPEECH[0], path)
    info = media.probe(path)
    assert not info.is_video and info.audio and info.duration_s > 1
    with pytest.raises(BadParameterError, match="has no picture"):
        media.mux(path, np.zeros((1, 10), np.float32), sample_rate=48000, output=tmp_path / "out.mp4")


@pytest.mark.parametrize("name", ["clip with spaces.mp4", "clip é 音.mp4", "-leading-dash.mp4"])
def test_awkward_names(name, tmp_path):
    path = tmp_path / name
    shutil.copy(MEDIA / "realshort_1s.mp4", path)
    info = media.probe(path)
    out = media.mux(path, np.zeros((2, 100), np.float32), sample_rate=48000, output=tmp_path / f"{name}.out.mp4")
    assert media.probe(out).duration_s == pytest.approx(info.duration_s, abs=1e-3)


def with_subtitles(path: Path) -> Path:
    """realshort_1s.mp4's picture plus a SubRip subtitle track, in Matroska."""
    from fractions import Fraction

    with av.open(str(MEDIA / "realshort_1s.mp4")) as source, av.open(str(path), "w") as out:
        video = out.add_stream_from_template(source.streams.video[0])
        subtitles = out.add_mux_stream("subrip", time_base=Fraction(1, 1000))
        subtitles.metadata["language"] = "eng"
        for packet in source.demux(source.streams.video[0]):
            if packet.size:
                packet.stream = video
                out.mux(packet)
        line = av.Packet(b"Hello there")
        line.pts, line.dts, line.duration, line.time_base, line.stream = 100, 100, 500, Fraction(1, 1000), subtitles
        out.mux(line)
    return path


def test_mux_keeps_subtitles_where_the_container_allows(tmp_path):
    source = with_subtitles(tmp_path / "subbed.mkv")
    audio = np.zeros((2, 48000), np.float32)
    kept = media.mux(source, audio, sample_rate=48000, output=tmp_path / "out.mkv")
    with av.open(str(kept)) as container:
        [track] = container.streams.subtitles
        assert [bytes(p) for p in container.demux(track) if p.size] == [b"Hello there"]
        assert track.metadata.get("language") == "eng"
    dropped = media.mux(source, audio, sample_rate=48000, output=tmp_path / "out.mp4")  # mp4 cannot hold SubRip
    with av.open(str(dropped)) as container:
        assert not container.streams.subtitles
    assert video_packets(dropped) == video_packets(source)
