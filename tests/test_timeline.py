"""Timelines: keyframes that follow a real ducking envelope, and .otio / FCP 7 .xml files read back by
OpenTimelineIO's own readers on real clips of four frame rates (24, 25, 30 and 24000/1001)."""

import subprocess
import sys
import urllib.parse
import xml.etree.ElementTree as ElementTree
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import MEDIA
from scoretrack import mix
from scoretrack.errors import BadParameterError, OutputExistsError, ScoretrackError, UnreadableMediaError
from scoretrack.media import probe, read_audio
from scoretrack.timeline import (
    check_timeline_support,
    envelope_keyframes,
    frame_count,
    timeline_rate,
    write_timeline,
)

otio = pytest.importorskip("opentimelineio")

SR = 48000
TOLERANCE_DB = 0.5
MUSIC = MEDIA / "music_vibe_ace.ogg"
# clip, the speech that ducks the music (None: the clip's own dialogue), expected timeline rate
CLIPS = [
    ("tos_battle_clip_70s.webm", "speech_silero_test_60s.wav", Fraction(24)),
    ("his_girl_friday_dialogue.mp4", None, Fraction(30)),
    ("grid_bbaf2n_speech.mpg", None, Fraction(25)),
    ("ntsc", None, Fraction(24000, 1001)),  # the GRID clip re-encoded at 23.976 fps
]


NTSC_TIMECODE = ("01:00:00:00", 86400)  # a camera-style start timecode on the NTSC clip, and its frame


def grid_clip(folder: Path, *, rate: str, timecode: str) -> Path:
    """GRID's talking head re-encoded at ``rate`` with a start ``timecode`` (a tmcd track), made with ffmpeg."""
    import imageio_ffmpeg

    out = folder / f"grid_{rate.replace('/', '_')}.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(MEDIA / "grid_bbaf2n_speech.mpg"),
                    "-r", rate, "-c:v", "mpeg4", "-q:v", "5", "-c:a", "aac", "-timecode", timecode, str(out)],
                   check=True)
    return out


def checked_envelope(gain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The envelope in dB every 10 ms (and at the last sample), floored at -96 dB as the keys are."""
    last = (gain.size - 1) / SR
    times = np.append(np.arange(0.0, last, 0.01), last)
    return times, np.maximum(20 * np.log10(np.maximum(gain[np.round(times * SR).astype(int)], 1e-12)), -96.0)


def line_errors(key_times, key_db, times, level_db) -> np.ndarray:
    """How far straight lines through the keys miss the envelope, drawn in dB or in linear gain (the worse)."""
    in_db = np.interp(times, key_times, key_db)
    in_gain = 20 * np.log10(np.interp(times, key_times, 10 ** (np.asarray(key_db) / 20)))
    return np.maximum(np.abs(in_db - level_db), np.abs(in_gain - level_db))


@pytest.fixture(scope="module", params=CLIPS, ids=[clip for clip, _, _ in CLIPS])
def scored(request, tmp_path_factory):
    """A clip, its ducking envelope from real speech, a dry stem and both timelines written."""
    clip, speech, rate = request.param
    folder = tmp_path_factory.mktemp("timeline")
    video = grid_clip(folder, rate="24000/1001", timecode=NTSC_TIMECODE[0]) if clip == "ntsc" else MEDIA / clip
    info = probe(video)
    dialogue = read_audio(MEDIA / speech if speech else video, sample_rate=SR, duration_s=info.duration_s)
    flags = mix.detect_speech(dialogue, sample_rate=SR)
    assert flags.any(), f"{clip}: no speech detected, the envelope would be flat"
    gain = mix.duck_envelope(flags, samples=dialogue.shape[1], sample_rate=SR, options=mix.MixOptions())
    stem = folder / f"{video.stem}.scored.music-dry.wav"
    sf.write(stem, read_audio(MUSIC, sample_rate=SR, duration_s=info.duration_s)[0], SR, subtype="PCM_24")
    keys = envelope_keyframes(gain, sample_rate=SR, tolerance_db=TOLERANCE_DB, frame_rate=info.video.frame_rate)
    seams = [(info.duration_s * 0.37, "seam"), (info.duration_s * 0.71, "seam")]
    files = {
        kind: write_timeline(folder / f"{video.stem}.scored{suffix}", kind=kind, video=video,
                             duration_s=info.duration_s, frame_rate=info.video.frame_rate, music_stem=stem,
                             keyframes=keys, markers=seams)
        for kind, suffix in (("otio", ".otio"), ("fcp7", ".xml"))
    }
    return dict(clip=clip, video=video, info=info, rate=rate, gain=gain, keys=keys, seams=seams, files=files)


@pytest.mark.parametrize("kind", ["otio", "fcp7"])
def test_timeline_reads_back_with_tracks_frames_media_and_markers(scored, kind):
    timeline = otio.adapters.read_from_file(str(scored["files"][kind]))
    rate, info = scored["rate"], scored["info"]
    assert timeline_rate(info.video.frame_rate) == rate
    frames = round(info.duration_s * float(rate))
    video_tracks = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Video]
    audio_tracks = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Audio]
    assert (len(video_tracks), len(audio_tracks)) == (1, 2)
    assert timeline.duration().rate == pytest.approx(float(rate), rel=1e-12)
    for track in timeline.tracks:
        assert track.duration().rescaled_to(float(rate)).value == pytest.approx(frames, abs=1e-6)
        for clip in track:
            path = Path(urllib.parse.unquote(urllib.parse.urlparse(clip.media_reference.target_url).path))
            assert path.is_absolute() and path.is_file(), clip.media_reference.target_url
    picture = video_tracks[0][0]
    assert Path(urllib.parse.urlparse(picture.media_reference.target_url).path) == scored["video"].resolve()
    start = NTSC_TIMECODE[1] if scored["clip"] == "ntsc" else 0  # source times begin at the start timecode
    for clip in (picture, audio_tracks[0][0]):
        assert clip.source_range.start_time.rescaled_to(float(rate)).value == pytest.approx(start, abs=1e-6)
    assert audio_tracks[1][0].source_range.start_time.value == 0
    marks = sorted(m.marked_range.start_time.to_seconds() for m in timeline.tracks.markers)
    assert [m.name for m in timeline.tracks.markers] == ["seam", "seam"]
    assert np.allclose(marks, [t for t, _ in scored["seams"]], atol=0.5 / float(rate) + 1e-9)


@pytest.mark.parametrize("kind", ["otio", "fcp7"])
def test_music_keyframes_read_back_follow_the_envelope(scored, kind):
    """The Audio Levels keys read back (linear gain on frames) redraw the envelope within 0.5 dB at every
    10 ms, except within a frame of a bend the frame grid cannot draw, where they miss by no more than
    lines through the envelope's value at every frame do."""
    timeline = otio.adapters.read_from_file(str(scored["files"][kind]))
    music = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Audio][-1][0]
    effect = music.metadata["fcp_xml"]["filter"]["effect"]
    parameter = effect["parameter"]
    assert (effect["effectid"], parameter["parameterid"]) == ("audiolevels", "level")
    rate = float(scored["rate"])
    key_times = np.array([int(k["when"]) for k in parameter["keyframe"]]) / rate
    key_db = 20 * np.log10([float(k["value"]) for k in parameter["keyframe"]])
    assert np.all(np.diff(key_times) > 0)
    times, level_db = checked_envelope(scored["gain"])
    error = line_errors(key_times, key_db, times, level_db)
    frame_times = np.arange(frame_count(times[-1], scored["rate"]) + 1) / rate
    grid_error = line_errors(frame_times, np.interp(frame_times, times, level_db), times, level_db)
    assert np.all(error <= np.maximum(TOLERANCE_DB, grid_error) + 1e-3)
    assert np.mean(error > TOLERANCE_DB + 1e-3) < 0.02 and error.max() < 1.5
    assert np.ptp(level_db) > 6  # the envelope really ducks: a flat one would prove nothing
    minutes = scored["info"].duration_s / 60
    assert len(key_times) < frame_count(scored["info"].duration_s, scored["rate"]) / 4
    if minutes > 0.5:
        assert len(key_times) / minutes < 60
    if kind == "otio":
        plain = music.metadata["scoretrack"]["volume_keyframes"]
        assert np.allclose([k["time_s"] for k in plain], key_times, atol=1e-9)
        assert np.allclose([k["gain_db"] for k in plain], key_db, atol=1e-4)


def test_keys_without_a_frame_rate_hold_the_tolerance_everywhere(scored):
    times, level_db = checked_envelope(scored["gain"])
    keys = envelope_keyframes(scored["gain"], sample_rate=SR, tolerance_db=TOLERANCE_DB)
    key_times, key_db = np.array(keys).T
    assert key_times[0] == 0 and key_times[-1] == pytest.approx(times[-1])
    assert line_errors(key_times, key_db, times, level_db).max() <= TOLERANCE_DB + 1e-9
    assert len(keys) < len(times) / 10


@pytest.mark.parametrize("frame_rate", [None, 24.0, 30000 / 1001])
def test_a_flat_envelope_gives_two_keys(frame_rate):
    keys = envelope_keyframes(np.full(3 * SR + 17, 0.5, np.float32), sample_rate=SR, frame_rate=frame_rate)
    assert len(keys) == 2
    assert keys[0] == (0.0, pytest.approx(-6.0206, abs=1e-3)) and keys[1][1] == pytest.approx(-6.0206, abs=1e-3)


def test_a_tighter_tolerance_takes_more_keys_and_holds():
    flags = np.zeros(400, bool)
    flags[50:120] = flags[200:210] = flags[300:380] = True  # three 30 ms-frame speech runs
    gain = mix.duck_envelope(flags, samples=12 * SR, sample_rate=SR, options=mix.MixOptions())
    times, level_db = checked_envelope(gain)
    counts = []
    for tolerance in (2.0, 0.5, 0.1):
        keys = np.array(envelope_keyframes(gain, sample_rate=SR, tolerance_db=tolerance)).T
        assert line_errors(keys[0], keys[1], times, level_db).max() <= tolerance + 1e-9
        counts.append(keys.shape[1])
    assert counts[0] < counts[1] < counts[2]


@pytest.mark.parametrize("frame_rate, rate", [
    (23.976023976, Fraction(24000, 1001)), (24.0, Fraction(24)), (25.0, Fraction(25)),
    (29.97002997, Fraction(30000, 1001)), (30.02, Fraction(30)), (59.94, Fraction(60000, 1001)),
    (14.985, Fraction(15)), (10.505, Fraction(11)), (0.4, Fraction(1)),
])
def test_timeline_rate(frame_rate, rate):
    assert timeline_rate(frame_rate) == rate


@pytest.mark.parametrize("call, error", [
    (lambda: envelope_keyframes(np.ones((1, 100)), sample_rate=SR), BadParameterError),
    (lambda: envelope_keyframes(np.array([]), sample_rate=SR), BadParameterError),
    (lambda: envelope_keyframes(np.array([1.0, -0.5]), sample_rate=SR), BadParameterError),
    (lambda: envelope_keyframes(np.array([1.0, np.nan]), sample_rate=SR), BadParameterError),
    (lambda: envelope_keyframes(np.ones(100), sample_rate=0), BadParameterError),
    (lambda: envelope_keyframes(np.ones(100), sample_rate=SR, tolerance_db=0), BadParameterError),
    (lambda: envelope_keyframes(np.ones(100), sample_rate=SR, frame_rate=0), BadParameterError),
    (lambda: timeline_rate(float("nan")), BadParameterError),
    (lambda: check_timeline_support(["otio", "edl"]), BadParameterError),
])
def test_bad_parameters(call, error):
    with pytest.raises(error):
        call()


@pytest.fixture()
def stem(tmp_path):
    path = tmp_path / "music.wav"
    sf.write(path, np.zeros(3 * SR, np.float32), SR)
    return path


@pytest.mark.parametrize("change, error", [
    (dict(kind="edl"), BadParameterError),
    (dict(kind="otio", path="t.xml"), BadParameterError),
    (dict(duration_s=0.0), BadParameterError),
    (dict(frame_rate=-25.0), BadParameterError),
    (dict(markers=[(3.5, "seam")]), BadParameterError),
    (dict(keyframes=[]), BadParameterError),
    (dict(keyframes=[(-1.0, 0.0)]), BadParameterError),
    (dict(keyframes=[(1.0, float("-inf"))]), BadParameterError),
    (dict(video="missing.mp4"), UnreadableMediaError),
    (dict(music_stem=MEDIA / "noaudio_bug_video_640.mp4"), UnreadableMediaError),
    (dict(path="exists.xml"), OutputExistsError),
])
def test_bad_timeline_parameters(tmp_path, stem, change, error):
    (tmp_path / "exists.xml").write_text("keep me")
    settings = dict(path="t.xml", kind="fcp7", video=MEDIA / "grid_bbaf2n_speech.mpg", duration_s=3.0,
                    frame_rate=25.0, music_stem=stem, keyframes=[(0.0, 0.0)], markers=[(1.0, "seam")])
    settings.update(change)
    settings["path"] = tmp_path / settings["path"]
    settings["video"] = tmp_path / settings["video"] if settings["video"] == "missing.mp4" else settings["video"]
    with pytest.raises(error):
        write_timeline(**settings)
    assert (tmp_path / "exists.xml").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["exists.xml", "music.wav"])


def test_without_original_audio_one_audio_track(tmp_path, stem):
    path = write_timeline(tmp_path / "t.otio", kind="otio", video=MEDIA / "grid_bbaf2n_speech.mpg", duration_s=3.0,
                          frame_rate=25.0, music_stem=stem, keyframes=[(0.0, -3.0)], markers=[],
                          original_audio=False, name="GRID scored")
    timeline = otio.adapters.read_from_file(str(path))
    assert timeline.name == "GRID scored"
    assert [t.kind for t in timeline.tracks] == [otio.schema.TrackKind.Video, otio.schema.TrackKind.Audio]


def test_both_kinds_are_supported_here():
    check_timeline_support(["otio", "fcp7"])  # the installed extra: OpenTimelineIO and its fcp_xml adapter


def test_without_opentimelineio_the_error_gives_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "opentimelineio", None)  # what an environment without the extra sees
    with pytest.raises(ScoretrackError, match=r"pip install 'scoretrack\[timeline\]'"):
        check_timeline_support(["fcp7"])
    check_timeline_support([])  # nothing asked, nothing needed


def test_a_drop_frame_timecode_is_kept(tmp_path, stem):
    """29.97 fps footage starting at 00:59:59;28 drop-frame: the XML names that timecode and the clip
    starts at its frame (107890), so an editor finds the same frames in the file."""
    video = grid_clip(tmp_path, rate="30000/1001", timecode="00:59:59;28")
    info = probe(video)
    path = write_timeline(tmp_path / "t.xml", kind="fcp7", video=video, duration_s=info.duration_s,
                          frame_rate=info.video.frame_rate, music_stem=stem, keyframes=[(0.0, 0.0)], markers=[])
    xml = path.read_text()
    assert "<string>00:59:59;28</string>" in xml and "<displayformat>DF</displayformat>" in xml
    picture = otio.adapters.read_from_file(str(path)).video_tracks()[0][0]
    assert picture.source_range.start_time.rescaled_to(30000 / 1001).value == pytest.approx(107890, abs=1e-6)


def test_a_flac_stem_is_described_as_audio(tmp_path):
    """The adapter guesses media kinds from extensions and would give a .flac stem a video stream."""
    stem = tmp_path / "music.flac"
    sf.write(stem, np.zeros((3 * SR, 2), np.float32), SR)
    path = write_timeline(tmp_path / "t.xml", kind="fcp7", video=MEDIA / "grid_bbaf2n_speech.mpg", duration_s=3.0,
                          frame_rate=25.0, music_stem=stem, keyframes=[(0.0, 0.0)], markers=[])
    files = {f.findtext("name"): f for f in ElementTree.parse(path).iter("file") if f.find("name") is not None}
    media = files["music.flac"].find("media")
    assert media.find("video") is None and media.findtext("audio/channelcount") == "2"
    assert files["grid_bbaf2n_speech.mpg"].find("media/video") is not None
