"""Files an editor has: surround sound, non-zero start times, pro and broadcast formats, audio-only
inputs, still images, and write failures. Every file is made here from the real clips, with ffmpeg."""

import os
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import scipy.signal

from conftest import MEDIA
from make_media import FOOTAGE, LAYOUTS, audio_file, ffmpeg, still_image, surround, video
from scoretrack import media
from scoretrack.errors import BadParameterError, UnreadableMediaError

RATE = 16000
# scoretrack.media alone, without the package __init__ (which imports torch): subprocesses start in 1 s
LIGHT_IMPORT = textwrap.dedent(f"""
    import sys, types
    package = types.ModuleType("scoretrack")
    package.__path__ = [{str(Path(media.__file__).parent)!r}]
    sys.modules["scoretrack"] = package
    from scoretrack import media
    """)
X264 = ("-c:v", "libx264", "-preset", "ultrafast")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Build each test file once, on first use."""
    folder = tmp_path_factory.mktemp("formats")
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = BUILDERS[name](folder / name)
        return cache[name]
    return get


def copyts_cut(path: Path) -> Path:
    ffmpeg("-ss", 4, "-t", 3, "-copyts", "-i", FOOTAGE, *X264, "-s", "160x120", "-c:a", "libopus", path)
    return path


def rotated(path: Path, source: Path) -> Path:
    ffmpeg("-display_rotation", 90, "-i", source, "-c", "copy", path)
    return path


BUILDERS = {
    "aac51.mp4": lambda p: surround(p, layout="5.1", audio_codec="aac"),
    "ac3_51side.mp4": lambda p: surround(p, layout="5.1(side)", audio_codec="ac3"),
    "aac71.mp4": lambda p: surround(p, layout="7.1", audio_codec="aac"),
    "pcm71.mov": lambda p: surround(p, layout="7.1", audio_codec="pcm_s16le"),
    "offset.ts": lambda p: video(p, *X264, source=FOOTAGE, duration_s=8.0),  # the TS muxer starts at 1.4 s
    "copyts_cut.mkv": copyts_cut,
    "prores_proxy.mov": lambda p: video(p, "-c:v", "prores_ks", "-profile:v", "proxy"),
    "prores_standard.mov": lambda p: video(p, "-c:v", "prores_ks", "-profile:v", "standard"),
    "prores_4444.mov": lambda p: video(p, "-c:v", "prores_ks", "-profile:v", "4444", "-pix_fmt", "yuva444p12le"),
    "hevc_hvc1.mp4": lambda p: video(p, "-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1",
                                     "-x265-params", "log-level=error"),
    "anamorphic.mov": lambda p: video(p, "-c:v", "prores_ks", "-profile:v", "proxy", "-vf", "scale=240:160,setsar=32/27", size="240x160"),
    "colour.mp4": lambda p: video(p, *X264, "-color_primaries", "smpte170m", "-color_trc", "smpte170m",
                                  "-colorspace", "smpte170m", "-color_range", "pc"),
    "interlaced.mov": lambda p: video(p, "-c:v", "prores_ks", "-flags", "+ildct+ilme", "-field_order", "bb"),
    "timecode.mov": lambda p: video(p, *X264, "-timecode", "01:00:00:00"),
    "av1_rot90.mp4": lambda p: rotated(p, video(p.with_name("av1.mp4"), "-c:v", "libsvtav1", "-preset", "12",
                                                "-svtav1-params", "log-level=0")),
    "mp3.avi": lambda p: video(p, *X264, audio=("-c:a", "libmp3lame")),
    "dnxhr.mxf": lambda p: video(p, "-c:v", "dnxhd", "-profile:v", "dnxhr_lb", "-pix_fmt", "yuv422p", size="1280x720",
                                 audio=("-c:a", "pcm_s16le", "-ar", "48000")),
    # pro masters starting at a timecode other than zero, as editors conform them
    "tc_prores422.mov": lambda p: video(p, "-c:v", "prores_ks", "-profile:v", "standard", "-timecode", "02:00:00:00"),
    "tc_prores4444.mov": lambda p: video(p, "-c:v", "prores_ks", "-profile:v", "4444", "-pix_fmt", "yuva444p12le",
                                         "-timecode", "03:10:20:15"),
    "tc_prores_df.mov": lambda p: video(p, "-r", "30000/1001", "-c:v", "prores_ks", "-profile:v", "proxy",
                                        "-timecode", "01:00:00;02"),  # 29.97 drop-frame
    "tc_dnxhr.mov": lambda p: video(p, "-c:v", "dnxhd", "-profile:v", "dnxhr_lb", "-pix_fmt", "yuv422p",
                                    "-timecode", "10:00:00:00", size="256x144"),
    "tc_dnxhr.mxf": lambda p: video(p, "-c:v", "dnxhd", "-profile:v", "dnxhr_lb", "-pix_fmt", "yuv422p",
                                    "-timecode", "10:00:00:00", size="256x144", audio=("-c:a", "pcm_s16le", "-ar", "48000")),
    "tc_prores422.mxf": lambda p: video(p, "-c:v", "prores_ks", "-profile:v", "standard", "-timecode", "01:59:59:29",
                                        audio=("-c:a", "pcm_s24le", "-ar", "48000")),
    "tc_prores4444.mxf": lambda p: video(p, "-c:v", "prores_ks", "-profile:v", "4444", "-pix_fmt", "yuva444p12le",
                                         "-timecode", "00:00:10:00", audio=("-c:a", "pcm_s24le", "-ar", "48000")),
    "tc_h264.mp4": lambda p: video(p, *X264, "-timecode", "05:00:00:00"),
    "tc_hevc.mp4": lambda p: video(p, "-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1",
                                   "-x265-params", "log-level=error", "-timecode", "00:10:00:00"),
    "speech.wav": lambda p: audio_file(p),
    "speech.flac": lambda p: audio_file(p),
    "speech.mp3": lambda p: audio_file(p),
    "speech.m4a": lambda p: audio_file(p, "-c:a", "aac"),
    "speech.ogg": lambda p: audio_file(p),
    "speech.opus": lambda p: audio_file(p),
    "speech.aiff": lambda p: audio_file(p),
    "speech_22k.mp3": lambda p: audio_file(p, "-ar", "22050", duration_s=1.3),  # MPEG-2 frames of 576 samples
    "speech_cbr.mp3": lambda p: audio_file(p, "-b:a", "64k", duration_s=2.7),
    "speech_opus.mka": lambda p: audio_file(p, "-c:a", "libopus", duration_s=1.7),  # Matroska's DiscardPadding
    "speech_51side.wav": lambda p: audio_file(p, "-c:a", "pcm_s24le", source=surround(
        p.with_name("51side.mov"), layout="5.1(side)", audio_codec="pcm_s16le")),
    "still.jpg": still_image,
    "still.png": still_image,
    "still.gif": still_image,
    "still_mjpeg.mov": lambda p: video(p, "-frames:v", "1", "-c:v", "mjpeg", audio=("-an",)),
}


def decode(path: Path, *, layout: str, rate: int = RATE) -> tuple[float, np.ndarray]:
    """First sample's time and the whole first audio stream, resampled by PyAV itself (packed, see
    media._packed_to_planar): the reference for read_audio."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout=layout, rate=rate)
        blocks, start = [], None
        for frame in [*container.decode(stream), None]:
            for out in resampler.resample(frame):
                start = float(out.pts * out.time_base) if start is None else start
                blocks.append(out.to_ndarray().reshape(out.samples, -1).T)
    return start, np.concatenate(blocks, axis=1)


def video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]


def lagged_correlation(a: np.ndarray, b: np.ndarray, *, max_lag: int = RATE // 20) -> float:
    """Correlation of two signals at the shift (within ``max_lag`` samples) that matches them best
    (encoders differ in delay)."""
    n = min(len(a), len(b)) - 2 * max_lag
    reference = b[max_lag : max_lag + n]
    lag = int(np.argmax(scipy.signal.correlate(a[: n + 2 * max_lag], reference, mode="valid", method="fft")))
    return correlation(a[lag : lag + n], reference)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(a.shape[-1], b.shape[-1])
    return float(np.corrcoef(a[..., :n].ravel(), b[..., :n].ravel())[0, 1])


# --- any channel layout -------------------------------------------------------------------------

SURROUND = [("aac51.mp4", "5.1"), ("ac3_51side.mp4", "5.1(side)"), ("aac71.mp4", "7.1"), ("pcm71.mov", "7.1")]


def test_reading_7_1_does_not_crash_the_process(made):
    # PyAV 18 miscounts the planes of 8-channel planar frames; the old read_audio died with SIGSEGV
    code = LIGHT_IMPORT + textwrap.dedent(f"""
        for channels in (1, 2, None):
            media.read_audio({str(made('pcm71.mov'))!r}, sample_rate=48000, channels=channels)
            media.read_audio({str(made('aac71.mp4'))!r}, sample_rate=48000, channels=channels)
        """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("name,layout", SURROUND)
def test_surround_probe_and_read(name, layout, made):
    path = made(name)
    info = media.probe(path)
    [stream] = info.audio
    assert (stream.layout, stream.channel_names, stream.channels) == (layout, LAYOUTS[layout], len(LAYOUTS[layout]))
    kept = media.read_audio(path, sample_rate=RATE, channels=None)
    assert kept.shape == (len(LAYOUTS[layout]), media.sample_count(info.duration_s, RATE))
    _, dialogue = decode(MEDIA / "his_girl_friday_dialogue.mp4", layout="mono")
    centre = LAYOUTS[layout].index("FC")
    assert lagged_correlation(kept[centre], dialogue[0]) > 0.9  # the dialogue is on FC, untouched
    assert max(lagged_correlation(kept[i], dialogue[0]) for i in range(len(kept)) if i != centre) < 0.5
    for channels, name_ in [(2, "stereo"), (1, "mono")]:
        mixed = media.read_audio(path, sample_rate=RATE, channels=channels)
        _, expected = decode(path, layout=name_)  # libswresample's matrix, not a channel mean
        n = min(mixed.shape[1], expected.shape[1])
        np.testing.assert_allclose(mixed[:, :n], expected[:, :n], atol=1e-5)


def test_channel_names():
    assert media.channel_names("5.1(side)") == ("FL", "FR", "FC", "LFE", "SL", "SR")
    assert media.channel_names("mono") == ("FC",)
    with pytest.raises(BadParameterError, match="layout='5.7'"):
        media.channel_names("5.7")


@pytest.mark.parametrize("name,layout,ext,written", [
    ("aac51.mp4", "5.1", ".mp4", "5.1"), ("ac3_51side.mp4", "5.1(side)", ".mov", "5.1"),
    ("ac3_51side.mp4", "5.1(side)", ".mkv", "5.1"), ("aac71.mp4", "7.1", ".mkv", "7.1"),
    ("pcm71.mov", "7.1", ".mov", "7.1"),
])
def test_mux_writes_surround(name, layout, ext, written, made, tmp_path):
    source = made(name)
    audio = media.read_audio(source, sample_rate=48000, channels=None)
    out = media.mux(source, audio, sample_rate=48000, output=tmp_path / f"out{ext}", layout=layout)
    [stream] = media.probe(out).audio
    assert stream.layout == written
    back = media.read_audio(out, sample_rate=48000, channels=None)
    for channel in LAYOUTS[layout]:  # every channel lands where it belongs (SL is written as BL)
        i, j = LAYOUTS[layout].index(channel), LAYOUTS[written].index({"SL": "BL", "SR": "BR"}.get(channel, channel)
                                                                       if written != layout else channel)
        assert correlation(back[j], audio[i]) > 0.9, channel
    assert video_packets(out) == video_packets(source)


def test_mux_refuses_a_layout_the_codec_cannot_hold_before_writing(made, tmp_path):
    audio = np.zeros((7, 48000), np.float32)
    with pytest.raises(BadParameterError, match="aac cannot hold 6.1"):
        media.mux(made("aac51.mp4"), audio, sample_rate=48000, output=tmp_path / "out.mp4", layout="6.1")
    with pytest.raises(BadParameterError, match="has 6 channels"):
        media.mux(made("aac51.mp4"), audio, sample_rate=48000, output=tmp_path / "out.mp4", layout="5.1")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BadParameterError, match="aac cannot hold 6.1"):
        media.check_output(media.probe(made("aac51.mp4")), tmp_path / "out.mp4", layout="6.1")


def test_mux_streams_blocks_like_an_array(made, tmp_path):
    source = made("aac51.mp4")
    audio = media.read_audio(source, sample_rate=48000, channels=None)
    taken = []

    def blocks():
        for start in range(0, audio.shape[1], 10_000):
            taken.append(start)
            yield audio[:, start : start + 10_000]
    whole = media.mux(source, audio, sample_rate=48000, output=tmp_path / "whole.mp4")
    streamed = media.mux(source, blocks(), sample_rate=48000, output=tmp_path / "streamed.mp4")
    assert len(taken) == -(-audio.shape[1] // 10_000)
    np.testing.assert_array_equal(media.read_audio(whole, sample_rate=48000, channels=None),
                                  media.read_audio(streamed, sample_rate=48000, channels=None))
    with pytest.raises(BadParameterError, match="NaN"):
        media.mux(source, iter([audio[:, :100], np.full((6, 100), np.nan, np.float32)]), sample_rate=48000,
                  output=tmp_path / "nan.mp4")
    assert not (tmp_path / "nan.mp4").exists()


def test_keep_original_audio_copies_every_track_bit_exact(made, tmp_path):
    source = made("ac3_51side.mp4")
    out = media.mux(source, np.zeros((2, 48000), np.float32), sample_rate=48000, output=tmp_path / "o.mov",
                    keep_original_audio=True)
    with av.open(str(out)) as container, av.open(str(source)) as original:
        new, kept = container.streams.audio
        assert new.disposition & av.stream.Disposition.default and not kept.disposition & av.stream.Disposition.default
        assert kept.codec_context.name == "ac3"
        assert [bytes(p) for p in container.demux(kept) if p.size] == \
               [bytes(p) for p in original.demux(original.streams.audio[0]) if p.size]
    with pytest.warns(UserWarning, match=r"\(opus\) skipped"):
        media.mux(MEDIA / "edge_no_duration_vp9_opus.webm", np.zeros((2, 48000), np.float32), sample_rate=48000,
                  output=tmp_path / "o.avi", keep_original_audio=True)


# --- timeline truth -----------------------------------------------------------------------------

@pytest.mark.parametrize("name,duration_s", [("offset.ts", 8.0), ("copyts_cut.mkv", 3.0)])
def test_timeline_starts_at_the_first_frame(name, duration_s, made, tmp_path):
    path = made(name)
    info = media.probe(path)
    frame = 1 / info.video.frame_rate
    assert info.start_s > 1.0 and info.start_s == info.video.start_s
    assert info.duration_s == pytest.approx(duration_s, abs=frame + 1e-6)
    audio = media.read_audio(path, sample_rate=RATE)
    assert audio.shape == (1, media.sample_count(info.duration_s, RATE))
    start, decoded = decode(path, layout="mono")
    skip = round((info.start_s - start) * RATE)
    assert correlation(audio[0, RATE:-RATE], decoded[0, skip + RATE : skip + audio.shape[1] - RATE]) > 0.999

    out = media.mux(path, audio, sample_rate=RATE, output=tmp_path / f"out{media.default_output_extension(info)}")
    written = media.probe(out)
    assert video_packets(out) == video_packets(path)
    assert written.duration_s == pytest.approx(info.duration_s, abs=1e-3)
    with av.open(str(out)) as container:
        audio_start = container.streams.audio[0].start_time * container.streams.audio[0].time_base
        video_start = container.streams.video[0].start_time * container.streams.video[0].time_base
    assert abs(audio_start - video_start) <= 1024 / RATE + 1e-3  # one codec frame of encoder priming, at most
    back = media.read_audio(out, sample_rate=RATE)
    # Matroska stamps in milliseconds and codecs add priming: within 2 ms of the original
    assert lagged_correlation(back[0, RATE:-RATE], audio[0, RATE:-RATE], max_lag=RATE // 500) > 0.95


def test_edit_list_and_rotation_still_work():
    info = media.probe(MEDIA / "ipad_IMG_0034_rot180.MOV")
    assert info.video.rotation in (180.0, -180.0) and info.start_s == 0.0
    assert info.duration_s == pytest.approx(2.733, abs=0.002)


# --- what the picture carries ---------------------------------------------------------------------

def stream_facts(path: Path) -> dict:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        return {"tag": context.codec_tag, "pix_fmt": context.pix_fmt, "sar": stream.sample_aspect_ratio,
                "colour": (context.color_primaries, context.color_trc, context.colorspace, context.color_range),
                "field_order": context.field_order, "timecode": stream.metadata.get("timecode"),
                "data": [s.metadata.get("timecode") for s in container.streams.data]}


@pytest.mark.parametrize("name,check", [
    ("prores_proxy.mov", {"tag": "apco"}), ("prores_standard.mov", {"tag": "apcn"}),
    ("prores_4444.mov", {"tag": "ap4h", "pix_fmt": "yuva444p12le"}), ("hevc_hvc1.mp4", {"tag": "hvc1"}),
    ("anamorphic.mov", {"sar": Fraction(32, 27)}), ("colour.mp4", {"colour": (1, 1, 6, 2)}),
    ("interlaced.mov", {"field_order": 5}), ("timecode.mov", {"timecode": "01:00:00:00", "data": ["01:00:00:00"]}),
])
def test_the_copied_picture_keeps_what_it_carries(name, check, made, tmp_path):
    source = made(name)
    before = stream_facts(source)
    assert {k: before[k] for k in check} == check  # the test file has it
    out = media.mux(source, np.zeros((2, 48000), np.float32), sample_rate=48000, output=tmp_path / f"out{source.suffix}")
    assert stream_facts(out) == before
    assert video_packets(out) == video_packets(source)


def start_timecodes(path: Path) -> set[str]:
    """Every start timecode the file declares, where ffprobe lists them: the file's tags (MXF) and each
    stream's (the picture's and its QuickTime tmcd track's)."""
    with av.open(str(path)) as container:
        return {container.metadata.get("timecode"), *(s.metadata.get("timecode") for s in container.streams)} - {None}


@pytest.mark.parametrize("name", ["tc_prores422.mov", "tc_prores4444.mov", "tc_prores_df.mov", "tc_dnxhr.mov",
                                  "tc_dnxhr.mxf", "tc_prores422.mxf", "tc_prores4444.mxf", "tc_h264.mp4",
                                  "tc_hevc.mp4", "timecode.mov"])
def test_the_start_timecode_survives_into_the_default_output(name, made, tmp_path):
    source = made(name)
    info = media.probe(source)
    [timecode] = start_timecodes(source)
    assert info.video.timecode == timecode and timecode != "00:00:00:00"
    out = media.mux(source, np.zeros((2, 48000), np.float32), sample_rate=48000, info=info,
                    output=tmp_path / f"out{media.default_output_extension(info)}")
    assert start_timecodes(out) == {timecode} and media.probe(out).video.timecode == timecode
    with av.open(str(out)) as written, av.open(str(source)) as original:
        assert [s.metadata.get("timecode") for s in written.streams.data] == [timecode]  # a tmcd track
        rate = original.streams.video[0].average_rate or original.streams.video[0].guessed_rate
        assert written.streams.video[0].average_rate == rate  # the timecode counts frames at the picture's rate
    assert video_packets(out) == video_packets(source)
    assert media.output_notes(info, out) == []


@pytest.mark.parametrize("name,output,note", [
    ("tc_h264.mp4", "o.mkv", "timecode 05:00:00:00 dropped: a Matroska (.mkv) file cannot hold it (write .mp4 or .m4v or .mov to keep it)"),
    ("tc_dnxhr.mxf", "o.mkv", None),  # refused anyway: Matroska cannot hold DNxHR
    ("tc_h264.mp4", "o.ts", "timecode 05:00:00:00 dropped: an MPEG-TS file cannot hold it (write .mp4 or .m4v or .mov to keep it)"),
    ("tc_prores422.mov", "o.mov", None), ("colour.mp4", "o.mkv", None), ("speech.mp3", "o.mp3", None),
])
def test_an_output_that_drops_the_timecode_says_so_when_planned(name, output, note, made, tmp_path):
    from scoretrack.plan import ClipRequest, plan_jobs

    jobs, refused = plan_jobs([ClipRequest(made(name), tmp_path / output)], model_name="m")
    if name == "tc_dnxhr.mxf":
        assert not jobs and "cannot hold dnxhd" in refused[0].error
    else:
        assert jobs[0].notes == ((note,) if note else ())
    assert list(tmp_path.iterdir()) == []


def test_av1_probes_from_side_data_and_muxes_by_copy(made, tmp_path):
    source = made("av1_rot90.mp4")
    info = media.probe(source)
    assert (info.video.codec, info.video.rotation, info.video.frame_count) == ("av1", 90.0, 30)
    with av.open(str(source)) as container:  # read from the header's side data, not by decoding a frame
        assert media._display_rotations(source, container) == {0: 90.0}
    for ext in (".mp4", ".mkv"):
        out = media.mux(source, np.zeros((1, 48000), np.float32), sample_rate=48000, output=tmp_path / f"out{ext}")
        assert video_packets(out) == video_packets(source)
        assert media.probe(out).video.rotation == 90.0


# --- containers: defaults and checks ------------------------------------------------------------

@pytest.mark.parametrize("name,extension", [
    ("dnxhr.mxf", ".mov"), ("prores_proxy.mov", ".mov"), ("offset.ts", ".ts"), ("mp3.avi", ".avi"),
    ("hevc_hvc1.mp4", ".mp4"), ("copyts_cut.mkv", ".mkv"), ("speech.wav", ".wav"), ("speech.flac", ".flac"),
    ("speech.mp3", ".mp3"), ("speech.m4a", ".m4a"), ("speech.opus", ".opus"), ("speech.ogg", ".ogg"),
    ("speech.aiff", ".wav"),
])
def test_default_output_holds_the_picture_bit_exact(name, extension, made, tmp_path):
    source = made(name)
    info = media.probe(source)
    assert media.default_output_extension(info) == extension
    out = tmp_path / f"out{extension}"
    media.check_output(info, out)
    if info.is_video:
        media.mux(source, np.zeros((2, 48000), np.float32), sample_rate=48000, output=out, info=info)
        assert video_packets(out) == video_packets(source)
        assert media.probe(out).duration_s == pytest.approx(info.duration_s, abs=1e-3)
    assert media.default_output_extension(media.probe(MEDIA / "grid_bbaf2n_speech.mpg")) == ".mkv"


@pytest.mark.parametrize("name,output,message", [
    ("dnxhr.mxf", "o.mkv", r"a Matroska \(\.mkv\) file cannot hold dnxhd video; write \.mov"),
    ("prores_proxy.mov", "o.mp4", r"cannot hold prores video; write \.mov, \.mkv"),
    ("speech.wav", "o.mp4", r"has no picture; write one of \.wav, \.flac, \.mp3, \.m4a, \.opus, \.ogg"),
    ("speech_51side.wav", "o.mp3", r"libmp3lame cannot hold 5\.1\(side\) audio .* write \.wav, \.flac"),
    ("offset.ts", "o.mpg", r"unsupported output extension"),
    ("colour.mp4", "o.avi", r"h264 from a mov,mp4.* file needs re-framing .* write \.mp4 instead"),
])
def test_check_output_refuses_up_front(name, output, message, made, tmp_path):
    info = media.probe(made(name))
    with pytest.raises(BadParameterError, match=message):
        media.check_output(info, tmp_path / output, layout=info.audio[0].layout if info.audio else None)
    assert list(tmp_path.iterdir()) == []


# --- audio-only inputs and still images ---------------------------------------------------------

@pytest.mark.parametrize("name", ["speech.wav", "speech.flac", "speech.mp3", "speech.m4a", "speech.ogg", "speech.opus"])
def test_audio_only_files_are_inputs(name, made):
    path = made(name)
    info = media.probe(path)
    assert info.video is None and not info.is_video and info.has_audio
    assert info.duration_s == pytest.approx(2.0, abs=0.03)
    audio = media.read_audio(path, sample_rate=RATE, channels=2)
    assert audio.shape == (2, media.sample_count(info.duration_s, RATE))
    _, dialogue = decode(MEDIA / "his_girl_friday_dialogue.mp4", layout="stereo")
    assert lagged_correlation(audio[0, : RATE], dialogue[0, : RATE]) > 0.9  # lossy codecs: encoder delays differ


def decoded_span(path: Path) -> tuple[float, float, int]:
    """Where a decoder's output starts and ends (encoder delay and padding dropped), in samples, and the rate."""
    with av.open(str(path)) as container:
        frames = container.decode(container.streams.audio[0])
        first = frame = next(frames)
        for frame in frames:
            pass
    rate = frame.sample_rate
    return float(first.pts * first.time_base * rate), float(frame.pts * frame.time_base * rate + frame.samples), rate


@pytest.mark.parametrize("name", ["speech.mp3", "speech_22k.mp3", "speech_cbr.mp3", "speech_opus.mka", "speech.opus",
                                  "speech.ogg", "speech.flac", MEDIA / "speech_apollo11.mp3"])
def test_an_audio_files_timeline_is_what_its_decoder_gives(name, made):
    # MP3 and Matroska declare the encoder's padding on the last packet; the old probe counted it
    path = name if isinstance(name, Path) else made(name)
    start, end, rate = decoded_span(path)
    info = media.probe(path)
    assert (info.start_s * rate, (info.start_s + info.duration_s) * rate) == pytest.approx((start, end), abs=0.5)
    assert media.read_audio(path, sample_rate=rate, channels=None).shape[1] == round(info.duration_s * rate)


def test_cover_art_is_not_video():
    info = media.probe(MEDIA / "music_vibe_ace.ogg")
    assert info.video is None and info.duration_s == pytest.approx(61.459, abs=0.01)


@pytest.mark.parametrize("name", ["still.jpg", "still.png", "still.gif", "still_mjpeg.mov"])
def test_still_images_are_refused(name, made):
    with pytest.raises(UnreadableMediaError, match="is a still image, not a video"):
        media.probe(made(name))


def test_avi_with_mp3_is_not_truncated(made):
    info = media.probe(made("mp3.avi"))  # its header counts one frame more than it holds
    assert info.duration_s == pytest.approx(1.0, abs=0.04)


# --- audio outputs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("extension", [".wav", ".flac", ".mp3", ".m4a", ".opus", ".ogg"])
def test_write_audio_decodes_to_exactly_the_samples_given(extension, tmp_path):
    speech = media.read_audio(MEDIA / "speech_jfk.wav", sample_rate=48000, channels=2, duration_s=1.3)[:, :-11]
    out = media.write_audio(speech, sample_rate=48000, output=tmp_path / f"out{extension}")
    info = media.probe(out)
    assert info.duration_s * 48000 == pytest.approx(speech.shape[1], abs=0.5)  # delay and padding declared
    if extension != ".m4a":  # PyAV's AAC decoder ignores the edit list that trims the end (probe reads it)
        start, end, rate = decoded_span(out)
        assert (end - start, rate) == (speech.shape[1], 48000)
    back = media.read_audio(out, sample_rate=48000, channels=None)
    if extension in (".wav", ".flac"):
        np.testing.assert_allclose(back, speech, atol=2 / 2**23)  # 24 bits
    else:
        assert correlation(back[0], speech[0]) > 0.95  # lossy, in time: delays compensated


@pytest.mark.parametrize("extension", [".wav", ".flac"])
def test_wav_and_flac_outputs_keep_the_channel_mask(extension, made, tmp_path):
    source = made("speech_51side.wav")
    assert media.probe(source).audio[0].layout == "5.1(side)"
    audio = media.read_audio(source, sample_rate=48000, channels=None)
    out = media.write_audio(audio, sample_rate=48000, output=tmp_path / f"out{extension}", layout="5.1(side)")
    assert media.probe(out).audio[0].layout == "5.1(side)"
    if extension == ".wav":  # WAVE_FORMAT_EXTENSIBLE, with FL FR FC LFE SL SR in its channel mask
        header = out.read_bytes()[:64]
        assert header[20:22] == b"\xfe\xff" and int.from_bytes(header[40:44], "little") == 0x60F
    np.testing.assert_allclose(media.read_audio(out, sample_rate=48000, channels=None), audio, atol=2 / 2**23)


# --- writing: full disk, temporary files ----------------------------------------------------------

def test_a_failed_write_names_the_output_not_the_input(made, tmp_path):
    # a 64 KiB file size limit makes every write past it fail (EFBIG) as a full disk would (ENOSPC)
    out = tmp_path / "out.mov"
    code = LIGHT_IMPORT + textwrap.dedent(f"""
        import resource, signal, numpy as np
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        try:
            media.mux({str(made('prores_standard.mov'))!r}, np.zeros((2, 48000), np.float32), sample_rate=48000,
                      output={str(out)!r})
        except Exception as error:
            print(type(error).__name__, error)
        """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{out}: cannot write the output" in result.stdout and "damaged" not in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".scoretrack-{dead.pid}-0a1b2c3d.mp4"
    ours = tmp_path / f".scoretrack-{os.getpid()}-0a1b2c3d.mp4"
    other = tmp_path / ".scoretrack-notes.txt"
    for path in (stale, ours, other):
        path.write_bytes(b"x")
    assert media.remove_stale_temp_files(tmp_path) == [stale]
    assert sorted(tmp_path.iterdir()) == sorted([ours, other])
    with media.atomic_output(tmp_path / "clip.mp4") as temp:
        assert temp.name.startswith(f".scoretrack-{os.getpid()}-") and temp.suffix == ".mp4"
        assert media.remove_stale_temp_files(tmp_path) == []
