"""Timelines proven in their applications' own terms, on real clips with real speech ducking the music.

Every ``.kdenlive`` is rendered by MLT's ``melt`` and its music compared with the ducked stem; every
``.fcpxml`` is validated against Apple's DTD of the version it declares; the FCP 7 XML is compared
element by element with Premiere's own export and read back through OpenTimelineIO, as is the
``.otio``. At 23.976, 25, 29.97 and 20 fps with mono and stereo takes, at 12, 15, 48, 50 and 120 fps
and on variable-rate phone clips, and for a voice-over without a picture.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import xml.etree.ElementTree as ElementTree
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from conftest import MEDIA
from make_media import audio_file, video
from scoretrack import cli, mix
from scoretrack.errors import BadParameterError, OutputExistsError, ScoretrackError, UnreadableMediaError
from scoretrack.media import probe, read_audio
from scoretrack.options import GenerationOptions, ScoreOptions
from scoretrack.plan import ClipRequest, SideOutputs, plan_jobs
from scoretrack.timelines import (
    TIMELINE_KINDS,
    build_timeline,
    check_rate,
    check_timeline_support,
    envelope_keyframes,
    frame_count,
    frame_fit,
    source_rate,
    timecode_frame,
    timecode_text,
    timeline_rate,
    write_timeline,
)
from scoretrack.timelines.fcpxml import project_rate

otio = pytest.importorskip("opentimelineio")
etree = pytest.importorskip("lxml.etree")

SR = 48000
HOP = round(SR * mix.ENVELOPE_HOP_S)  # samples between two points of the ducking envelope
TOLERANCE_DB = 0.5
REFERENCE = MEDIA.parent / "reference"
GRID = MEDIA / "grid_bbaf2n_speech.mpg"  # 3 s, 25 fps, a sentence of speech
MUSIC = (MEDIA / "music_vibe_ace.ogg", MEDIA / "music_brahms_hungarian5.ogg")
VOICE = MEDIA / "speech_jfk.wav"
# rate the clip is made at, music channels, start timecode: the four rates the melt renders are held to
RENDERED = [("24000/1001", 2, "01:00:00:00"), ("24000/1001", 1, None), ("25", 2, None), ("25", 1, None),
            ("30000/1001", 2, "00:59:59;28"), ("30000/1001", 1, None), ("20", 2, None), ("20", 1, None)]


@pytest.fixture(scope="module")
def melt():
    path = shutil.which("melt")
    if path is None:
        pytest.skip("MLT's melt is not installed (scripts/test.sh installs Debian's melt)")
    return path


def clip(folder: Path, rate: str, *, seconds: float = 3.0, timecode: str | None = None) -> Path:
    """GRID's talking head re-encoded at ``rate`` (small frames), with a start ``timecode`` when given."""
    name = f"grid {rate.replace('/', '_')} é{'_tc' if timecode else ''}.mp4"  # a space and an accent in the name
    extra = ("-timecode", timecode) if timecode else ()
    return video(folder / name, "-r", rate, "-c:v", "mpeg4", "-q:v", "5", *extra, source=GRID, duration_s=seconds)


def ducking(path: Path, duration_s: float) -> np.ndarray:
    """The ducking envelope (a point every 10 ms) that the clip's own speech gives."""
    dialogue = read_audio(path, sample_rate=SR, duration_s=duration_s)
    flags = mix.detect_speech(dialogue, sample_rate=SR)
    assert flags.any(), f"{path.name}: no speech detected, the envelope would be flat"
    return mix.duck_envelope(flags, samples=dialogue.shape[1], sample_rate=SR, options=mix.MixOptions())


def synthetic_ducking(duration_s: float) -> np.ndarray:
    """A known envelope: 9 dB down over 400 ms from 20 % of the clip, up over 600 ms from 60 %. A frame of
    12 or 15 fps (83, 67 ms) cannot draw the corners of the mixer's 100 ms attack within 0.5 dB; this one it can."""
    points = round(duration_s / mix.ENVELOPE_HOP_S) + 1
    times = np.arange(points) * mix.ENVELOPE_HOP_S
    down, up = 0.2 * duration_s, 0.6 * duration_s
    level = -9 * np.clip(np.minimum((times - down) / 0.4, 1 - (times - up) / 0.6), 0, 1)
    return 10 ** (level / 20)


def dry_stems(folder: Path, duration_s: float, *, channels: int, takes: int) -> list[tuple[int, Path]]:
    """Dry music stems, one per take, of the clip's length: real music, each take a different passage."""
    stems = []
    samples = round(duration_s * SR)
    for number in range(1, takes + 1):
        music = read_audio(MUSIC[number % 2], sample_rate=SR, channels=2, start_s=4.0 * number,
                           duration_s=duration_s)[:, :samples]
        music = music.mean(axis=0, keepdims=True) if channels == 1 else music
        path = folder / f"take {number}.music-dry.wav"
        sf.write(path, (0.5 * music).T, SR, subtype="PCM_24")
        stems.append((number, path))
    return stems


def ducked(stem: Path, envelope: np.ndarray) -> np.ndarray:
    """The stem times the ducking gain, as the mixer makes ``NAME.scored.music.wav``: (channels, samples)."""
    dry = sf.read(stem, always_2d=True, dtype="float32")[0].T
    return dry * mix.expand_envelope(envelope, hop=HOP, start=0, stop=dry.shape[1])


def write_all(folder: Path, timeline) -> dict[str, Path]:
    return {kind: write_timeline(folder / f"{timeline.name}.scored{suffix}", timeline, kind=kind)
            for kind, suffix in TIMELINE_KINDS.items()}


def render(project: Path, out: Path, *, mute: tuple[str, ...] = (), play: tuple[str, ...] = ()) -> Path:
    """Render a Kdenlive project with melt; ``mute``/``play`` name audio tracks to mute or unmute first (in a
    copy, as Kdenlive's track header does: ``hide="both"`` or ``"video"`` on the track's own tracks).

    A ``.wav`` gets the sound alone; a ``.mkv`` the picture too, coarsely (the length counts, not the
    pixels). melt 7.12 now and then never starts its consumer under load (the output stays empty and
    melt waits for ever, whatever the project: 5 of 80 renders on two busy cores): such a run is retried."""
    tree = ElementTree.parse(project)
    for tractor in tree.getroot().iter("tractor"):
        name = tractor.findtext("property[@name='kdenlive:track_name']")
        if name in mute or name in play:
            for track in tractor.findall("track"):
                track.set("hide", "both" if name in mute else "video")
    copy = out.with_suffix(".kdenlive")
    tree.write(copy, encoding="utf-8", xml_declaration=True)
    consumer = ["acodec=pcm_f32le"] if out.suffix == ".wav" else ["acodec=pcm_s16le", "vcodec=mpeg4", "qscale=31"]
    for _ in range(3):
        if _melt(["melt", "-quiet", str(copy), "-consumer", f"avformat:{out}", *consumer], out):
            return out
    raise AssertionError(f"melt hung three times rendering {copy}")


def _cpu_s(pid: int) -> float:
    """CPU seconds a process has used (user and system, from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _melt(command: list[str], out: Path, *, idle_polls: int = 50, limit_cpu_s: float = 300.0) -> bool:
    """Run melt; False when it hung before writing anything (then it is stopped), True when it finished.

    Hung means idle: no output and no CPU time used over ``idle_polls`` polls of 0.1 s, which a slow melt on
    busy cores never is (it gets some CPU in 5 s at any load); a wall-clock limit instead killed slow renders
    under load (the first output of a render on two cores shared with 4 others came after more than 10 s)."""
    out.unlink(missing_ok=True)
    log = out.with_suffix(".melt.log")
    with log.open("w") as errors, subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                   stderr=errors) as process:
        used, idle = -1.0, 0
        while process.poll() is None:
            try:
                now = _cpu_s(process.pid)
            except OSError:  # it just ended
                continue
            idle = 0 if now != used else idle + 1
            used = now
            if idle >= idle_polls or used > limit_cpu_s:
                process.kill()
                process.wait()
                assert used <= limit_cpu_s, f"melt used over {limit_cpu_s} s of CPU"
                assert not (out.is_file() and out.stat().st_size), "melt stopped midway through a render"
                return False
            time.sleep(0.1)
        assert process.returncode == 0 and out.is_file(), log.read_text()
    return True


def level_errors(rendered: np.ndarray, reference: np.ndarray, *, window_s: float = 0.05) -> np.ndarray:
    """Rendered minus reference level (dB) per channel in each 50 ms window where the reference is above
    -50 dBFS; a mono reference stands for every rendered channel."""
    reference = np.broadcast_to(reference, (rendered.shape[0], reference.shape[1]))
    hop = round(window_s * SR)
    windows = min(rendered.shape[1], reference.shape[1]) // hop
    shape = (rendered.shape[0], windows, hop)
    ours = np.sqrt(np.mean(rendered[:, :windows * hop].reshape(shape) ** 2, axis=2))
    theirs = np.sqrt(np.mean(reference[:, :windows * hop].reshape(shape) ** 2, axis=2))
    loud = theirs > 10 ** (-50 / 20)
    return 20 * np.log10(np.maximum(ours[loud], 1e-12) / theirs[loud])


def assert_plays_the_ducked_music(project: Path, folder: Path, timeline, envelope: np.ndarray) -> np.ndarray:
    """melt renders the project's music alone (the original sound muted) within 0.5 dB of take 1 times the
    ducking in 99 % of 50 ms windows and never 1 dB off; returns the errors."""
    music = render(project, folder / "music.wav", mute=("Original sound",))
    rendered = sf.read(music, always_2d=True, dtype="float32")[0].T
    reference = ducked(timeline.takes[0].path, envelope)
    assert abs(rendered.shape[1] - reference.shape[1]) <= SR / timeline.rate  # within a frame
    errors = level_errors(rendered, reference)
    assert errors.size > 20 and np.ptp(20 * np.log10(envelope + 1e-12)) > 6  # music to compare, and ducked
    assert np.mean(np.abs(errors) <= 0.5) >= 0.99 and np.abs(errors).max() <= 1.0, \
        f"{np.mean(np.abs(errors) <= 0.5):.2%} within 0.5 dB, worst {np.abs(errors).max():.2f} dB"
    return errors


def assert_renders_to_the_frame(project: Path, folder: Path, timeline) -> None:
    """The project as written renders exactly the clip's frames, and sound for as long."""
    full = render(project, folder / ("full.mkv" if timeline.picture else "full.wav"))
    if timeline.picture:
        with av.open(str(full)) as container:
            assert sum(1 for _ in container.decode(video=0)) == timeline.frames
    with av.open(str(full)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert samples == pytest.approx(timeline.frames / timeline.rate * SR, abs=1)


def assert_fcpxml_valid(path: Path) -> str:
    """Valid against Apple's DTD of the version the document declares; returns that version."""
    document = etree.parse(str(path))
    version = document.getroot().get("version")
    dtd = etree.DTD(str(REFERENCE / "fcpxml" / f"FCPXMLv{version.replace('.', '_')}.dtd"))
    assert dtd.validate(document), dtd.error_log.filter_from_errors()
    return version


def url_path(url: str) -> Path:
    return Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))


def assert_reads_back(path: Path, timeline) -> object:
    """OpenTimelineIO reads the file: the picture (if any), the sound and every take, each the clip's
    length at the timeline's rate, every media reference an existing file, the markers in place."""
    read = otio.adapters.read_from_file(str(path))
    rate = float(timeline.rate)
    kinds = [track.kind for track in read.tracks]
    assert kinds.count(otio.schema.TrackKind.Video) == (timeline.picture is not None)
    # a stereo pair of FCP 7 XML tracks reads back as one track
    assert kinds.count(otio.schema.TrackKind.Audio) == (timeline.sound is not None) + len(timeline.takes)
    for track in read.tracks:
        assert track.duration().rescaled_to(rate).value == pytest.approx(timeline.frames, abs=1e-6)
        for item in track:
            assert url_path(item.media_reference.target_url).is_file(), item.media_reference.target_url
    if timeline.picture:
        picture = read.video_tracks()[0][0]
        assert url_path(picture.media_reference.target_url) == timeline.source
        start = picture.source_range.start_time.rescaled_to(rate).value
        assert start == pytest.approx(timeline.picture.start_frame, abs=1e-6)
    marks = [(m.name, round(m.marked_range.start_time.rescaled_to(rate).value)) for m in read.tracks.markers]
    assert marks == [(marker.label, marker.frame) for marker in timeline.markers]
    return read


@pytest.fixture(scope="module", params=RENDERED, ids=[f"{r.replace('/', '_')}fps-{c}ch" for r, c, _ in RENDERED])
def scored(request, tmp_path_factory):
    """A real clip with speech, its ducking envelope, two or three dry takes, and all four timelines."""
    rate, channels, timecode = request.param
    folder = tmp_path_factory.mktemp("time line")
    source = GRID if rate == "25" and channels == 2 else clip(folder, rate, timecode=timecode)
    info = probe(source)
    envelope = ducking(source, info.duration_s)
    takes = dry_stems(folder, info.duration_s, channels=channels, takes=2 if channels == 2 else 3)
    seams = [(info.duration_s * 0.37, "seam"), (info.duration_s * 0.5, "style: tense strings"),
             (info.duration_s * 0.71, "cut")]
    timeline = build_timeline(info, takes=takes, gain=envelope, gain_rate=round(1 / mix.ENVELOPE_HOP_S),
                              markers=seams)
    return dict(folder=folder, info=info, envelope=envelope, timeline=timeline, files=write_all(folder, timeline),
                rate=Fraction(rate), timecode=timecode)


def test_the_timeline_runs_at_the_clip_rate_from_its_timecode(scored):
    timeline, rate = scored["timeline"], scored["rate"]
    assert timeline.rate == rate and timeline.frames == frame_count(scored["info"].duration_s, rate)
    expected = timecode_frame(scored["timecode"], rate) if scored["timecode"] else (0, False)
    assert (timeline.picture.start_frame, timeline.picture.drop_frame) == expected
    assert [take.number for take in timeline.takes] == list(range(1, len(timeline.takes) + 1))
    assert [marker.kind for marker in timeline.markers] == ["seam", "style", "cut"]


def test_kdenlive_plays_take_1_as_the_ducked_stem(scored, melt):
    assert_plays_the_ducked_music(scored["files"]["kdenlive"], scored["folder"], scored["timeline"], scored["envelope"])


def test_kdenlive_renders_the_clip_to_the_frame(scored, melt):
    assert_renders_to_the_frame(scored["files"]["kdenlive"], scored["folder"], scored["timeline"])


def kdenlive_track_states(project: Path) -> dict[str, set[str]]:
    """Each named track's ``hide`` values on its own ``<track>`` elements."""
    root = ElementTree.parse(project).getroot()
    return {tractor.findtext("property[@name='kdenlive:track_name']"): {t.get("hide") for t in tractor.findall("track")}
            for tractor in root.findall("tractor")[:-1]}


def test_kdenlive_mutes_takes_as_kdenlive_saves_a_muted_track(scored):
    """Kdenlive 22.12 saves a muted audio track as ``hide="both"`` on the track's own tracks and ignores (and
    drops) a ``hide`` on the main tractor's (``../shared/reference/kdenlive/saved-by-kdenlive-22.12.3.kdenlive``)."""
    timeline = scored["timeline"]
    states = kdenlive_track_states(scored["files"]["kdenlive"])
    assert states["Picture"] == {"audio"} and states["Original sound"] == {"video"}
    assert states["Music take 1"] == {"video"}
    assert all(states[f"Music take {take.number}"] == {"both"} for take in timeline.takes[1:])
    main = ElementTree.parse(scored["files"]["kdenlive"]).getroot().findall("tractor")[-1]
    assert all(track.get("hide") is None for track in main.findall("track"))
    reference = kdenlive_track_states(REFERENCE / "kdenlive" / "saved-by-kdenlive-22.12.3.kdenlive")
    assert reference["Music take 1"] == {"both"}  # the track muted in Kdenlive's header, as Kdenlive wrote it


def test_kdenlive_other_takes_wait_muted_with_the_same_ducking(scored, melt, tmp_path):
    """Unmuting take 2 (and muting take 1) plays take 2, ducked the same way."""
    timeline = scored["timeline"]
    music = render(scored["files"]["kdenlive"], tmp_path / "take2.wav", mute=("Original sound", "Music take 1"),
                   play=("Music take 2",))
    rendered = sf.read(music, always_2d=True, dtype="float32")[0].T
    errors = level_errors(rendered, ducked(timeline.takes[1].path, scored["envelope"]))
    assert np.mean(np.abs(errors) <= 0.5) >= 0.99 and np.abs(errors).max() <= 1.0, \
        f"{np.mean(np.abs(errors) <= 0.5):.2%} within 0.5 dB, worst {np.abs(errors).max():.2f} dB, {np.round(errors, 2)}"


def test_kdenlive_holds_kdenlive_document_structure(scored):
    root = ElementTree.parse(scored["files"]["kdenlive"]).getroot()
    timeline = scored["timeline"]
    assert root.tag == "mlt" and root.get("producer") == "main_bin"
    profile = root.find("profile")
    assert Fraction(int(profile.get("frame_rate_num")), int(profile.get("frame_rate_den"))) == timeline.rate
    main_bin = root.find("playlist[@id='main_bin']")
    properties = {p.get("name"): p.text for p in main_bin.findall("property")}
    assert properties["kdenlive:docproperties.version"] == "1.04"
    bin_ids = {root.find(f"producer[@id='{entry.get('producer')}']").findtext("property[@name='kdenlive:id']")
               for entry in main_bin.findall("entry")}
    assert len(bin_ids) == 1 + len(timeline.takes)  # the source and each take, each its own bin clip
    guides = json.loads(properties["kdenlive:docproperties.guides"])
    assert [(g["comment"], g["pos"]) for g in guides] == [(m.label, m.frame) for m in timeline.markers]
    tracks = len(root.findall("tractor")[-1].findall("track")) - 1  # the black track is not one
    # by position from the bottom (the last take first): take 1, the music that plays; without one Kdenlive warns "-1"
    assert int(properties["kdenlive:docproperties.activeTrack"]) == len(timeline.takes) - 1 < tracks
    names = [t.findtext("property[@name='kdenlive:track_name']") for t in root.findall("tractor")[:-1]]
    assert names == ["Picture", "Original sound"] + [f"Music take {take.number}" for take in timeline.takes]
    for tractor in root.findall("tractor")[:-1]:
        assert len(tractor.findall("track")) == 2  # Kdenlive's two playlists per track
    transitions = [t.findtext("property[@name='mlt_service']") for t in root.findall("tractor")[-1].iter("transition")]
    assert transitions.count("mix") == 1 + len(timeline.takes) and transitions.count("qtblend") == 1
    effects = [f for f in root.iter("filter") if f.findtext("property[@name='kdenlive_id']") == "volume"]
    keyed = [f for f in effects if ";" in f.findtext("property[@name='level']")]
    assert len(keyed) == len(timeline.takes)


def test_fcpxml_is_valid_against_the_dtd_of_its_version(scored):
    assert assert_fcpxml_valid(scored["files"]["fcpxml"]) == "1.8"
    root = ElementTree.parse(scored["files"]["fcpxml"]).getroot()
    timeline = scored["timeline"]
    frame = 1 / project_rate(timeline.rate)
    assert root.find("resources/format[@id='r1']").get("frameDuration") == f"{frame.numerator}/{frame.denominator}s"
    primary = root.find("event/project/sequence/spine/asset-clip")
    audition = primary.find("audition")
    takes = audition.findall("asset-clip") if audition is not None else primary.findall("asset-clip")
    assert len(takes) == len(timeline.takes) and (audition is not None) == (len(timeline.takes) > 1)
    for take in takes:
        keys = take.findall("adjust-volume/param[@name='amount']/keyframeAnimation/keyframe")
        assert len(keys) >= 4 and all(k.get("value").endswith("dB") for k in keys)
    assert [m.get("value") for m in primary.findall("marker")] == [m.label for m in timeline.markers]


def test_otio_reads_back_with_the_ducking_as_a_volume_effect(scored):
    timeline = scored["timeline"]
    read = assert_reads_back(scored["files"]["otio"], timeline)
    music = [track for track in read.tracks if track.name.startswith("Music take")]
    assert [track.enabled for track in music] == [True] + [False] * (len(timeline.takes) - 1)
    for track in music:
        [effect] = track[0].effects
        assert (effect.name, effect.effect_name) == ("volume", "volume")
        keys = effect.metadata["scoretrack"]["keyframes"]
        assert [(k["frame"], k["gain_db"]) for k in keys] == list(timeline.volume)
        assert track[0].metadata["fcp_xml"]["filter"]["effect"]["effectid"] == "audiolevels"


def test_fcp7_reads_back_through_opentimelineio(scored):
    timeline = scored["timeline"]
    read = assert_reads_back(scored["files"]["fcp7"], timeline)
    audio = [track for track in read.tracks if track.kind == otio.schema.TrackKind.Audio]
    # a stereo pair reads back as one track; each mono take is a track of its own
    assert len(audio) == 1 + len(timeline.takes)
    keys = audio[1][0].effects[0].metadata["fcp_xml"]["parameter"]["keyframe"]
    assert [int(k["when"]) for k in keys] == [frame for frame, _ in timeline.volume]


def test_music_keys_follow_the_envelope(scored):
    """The volume keys redraw the speech-driven envelope within 0.5 dB at every 10 ms, except within a
    frame of a bend the frame grid cannot draw, where they miss by no more than the closest lines
    through every frame do."""
    timeline, gain = scored["timeline"], scored["envelope"]
    rate = float(timeline.rate)
    key_times, key_db = np.array(timeline.volume_s).T
    times, level_db = checked_envelope(gain, 100)
    times, level_db = times[times <= key_times[-1]], level_db[times <= key_times[-1]]
    error = line_errors(key_times, key_db, times, level_db)
    frame_times = np.arange(timeline.frames + 1) / rate
    grid_error = line_errors(frame_times, frame_fit(times, level_db, frame_times), times, level_db)
    assert np.all(error <= np.maximum(TOLERANCE_DB, grid_error) + 1e-3)
    assert np.mean(error > TOLERANCE_DB + 1e-3) < 0.05 and error.max() < 2
    assert len(key_times) < timeline.frames / 3


FADE_INN = REFERENCE / "xmeml" / "Fade_inn.xml"
# leaves whose text is Premiere's vocabulary, not the clip's: they must read the same
SAME_TEXT = {"enabled", "mediatype", "effectid", "effectcategory", "effecttype", "parameterid", "valuemin",
             "valuemax", "start", "in"}


def tag_paths(element, prefix: str = "") -> set[str]:
    paths = set()
    for child in element:
        path = f"{prefix}/{child.tag}"
        paths |= {path} | tag_paths(child, path)
    return paths


def leaf_texts(element, prefix: str = "") -> dict[str, set[str]]:
    texts: dict[str, set[str]] = {}
    for child in element:
        path = f"{prefix}/{child.tag}"
        if len(child) == 0 and child.tag in SAME_TEXT:
            texts.setdefault(path, set()).add((child.text or "").strip())
        for key, value in leaf_texts(child, path).items():
            texts.setdefault(key, set()).update(value)
    return texts


def test_fcp7_is_structured_like_premieres_own_export(scored):
    """Each audio clipitem, of the original sound and of the music, holds every element, at every depth,
    that Premiere's own clipitem in Fade_inn.xml holds (file, media with samplecharacteristics and a
    channel count, sourcetrack, the Audio Levels filter, links, logging info, labels), with the same
    vocabulary; paths are percent-encoded file://localhost/ URLs; a stereo sound is one clipitem per
    channel linked with the picture; the sequence format holds the frame size and the audio outputs."""
    timeline = scored["timeline"]
    theirs = ElementTree.parse(FADE_INN).getroot().find(".//clipitem[@id='clipitem-186']")
    ours = ElementTree.parse(scored["files"]["fcp7"]).getroot()
    items = {item.get("id"): item for item in ours.iter("clipitem")}
    full = {f.get("id"): f for f in ours.iter("file") if len(f)}
    for item in ours.findall("sequence/media/audio/track/clipitem"):
        expanded = ElementTree.fromstring(ElementTree.tostring(item))
        expanded.remove(expanded.find("file"))
        expanded.append(full[item.find("file").get("id")])  # the file as first written, like Fade_inn's
        assert tag_paths(theirs) <= tag_paths(expanded), tag_paths(theirs) - tag_paths(expanded)
        mine = leaf_texts(expanded)
        for path, texts in leaf_texts(theirs).items():
            assert mine[path] <= texts | {"video"}, (path, mine[path], texts)
    for file in full.values():
        url = file.findtext("pathurl")
        assert url.startswith("file://localhost/") and " " not in url and url_path(url).is_file()
        assert file.find("media/audio/samplecharacteristics/samplerate") is not None
        assert file.findtext("media/audio/channelcount") in ("1", "2")
    picture_file = full["file-1"]
    assert picture_file.findtext("media/video/samplecharacteristics/width") == str(timeline.picture.width)
    sound = [item for item in ours.findall("sequence/media/audio/track/clipitem") if item.find("file").get("id") == "file-1"]
    assert [item.findtext("sourcetrack/trackindex") for item in sound] == ["1", "2"]  # GRID's sound is stereo
    for item in sound:
        assert {link.findtext("linkclipref") for link in item.findall("link")} == {"clipitem-1", "clipitem-2", "clipitem-3"}
    assert items["clipitem-1"].findtext("sourcetrack/mediatype") == "video"
    sequence_format = ours.find("sequence/media/video/format/samplecharacteristics")
    assert sequence_format.findtext("width") == str(timeline.picture.width)
    assert len(ours.findall("sequence/media/audio/outputs/group")) == 2
    enabled = [track.findtext("enabled") for track in ours.findall("sequence/media/audio/track")]
    take_1 = timeline.takes[0].channels
    assert enabled == ["TRUE"] * (2 + take_1) + ["FALSE"] * (len(enabled) - 2 - take_1)


# --- every rate, phone clips and voice-overs ------------------------------------------------------------

UNUSUAL = [("12", Fraction(12), Fraction(24)), ("15", Fraction(15), Fraction(24)), ("48", Fraction(48), Fraction(50)),
           ("50", Fraction(50), Fraction(50)), ("120", Fraction(120), Fraction(60)),
           ("20 silent", Fraction(20), Fraction(24)),  # a picture without sound: no original-sound track
           ("edge_fire2_audio_shorter.mp4", Fraction(11), Fraction(24)),  # a phone's variable rate, 10.5 fps on average
           ("edge_no_duration_vp9_opus.webm", Fraction(15), Fraction(24))]  # 14.985 fps, no duration in the header


@pytest.mark.parametrize("source, rate, fcp_rate", UNUSUAL, ids=[s for s, _, _ in UNUSUAL])
def test_every_kind_at_an_unusual_rate(source, rate, fcp_rate, tmp_path, melt):
    """Each kind is written at the format's nearest rate: FCP 7 XML, OTIO and Kdenlive at the clip's own
    (whole) rate, FCPXML at the nearest Final Cut Pro project rate; Kdenlive renders it to the frame."""
    if source.endswith((".mp4", ".webm")):
        path = MEDIA / source
    elif source.endswith("silent"):
        path = video(tmp_path / "silent.mp4", "-r", "20", "-c:v", "mpeg4", source=GRID, duration_s=2.0, audio=("-an",))
    else:
        path = clip(tmp_path, source, seconds=2.0)
    info = probe(path)
    envelope = synthetic_ducking(info.duration_s)
    timeline = build_timeline(info, takes=dry_stems(tmp_path, info.duration_s, channels=1, takes=1), gain=envelope,
                              gain_rate=100, markers=[(info.duration_s / 2, "seam")])
    assert timeline.rate == rate and project_rate(timeline.rate) == fcp_rate
    files = write_all(tmp_path, timeline)
    assert_fcpxml_valid(files["fcpxml"])
    fcpxml = ElementTree.parse(files["fcpxml"]).getroot()
    assert fcpxml.find("resources/format[@id='r1']").get("frameDuration") == f"1/{fcp_rate}s"
    assert_reads_back(files["otio"], timeline)
    assert_reads_back(files["fcp7"], timeline)
    assert ElementTree.parse(files["fcp7"]).getroot().findtext("sequence/rate/timebase") == str(rate)
    assert_renders_to_the_frame(files["kdenlive"], tmp_path, timeline)
    assert_plays_the_ducked_music(files["kdenlive"], tmp_path, timeline, envelope)


@pytest.mark.parametrize("chosen, rate", [(None, Fraction(25)), ("29.97", Fraction(30000, 1001))])
def test_a_voice_over_gets_every_kind_without_a_picture(chosen, rate, tmp_path, melt):
    voice = audio_file(tmp_path / "voice over.wav", "-c:a", "pcm_s16le", source=VOICE, duration_s=2.5)
    info = probe(voice)
    envelope = ducking(voice, info.duration_s)
    extra = {"audio_only_rate": chosen} if chosen else {}
    timeline = build_timeline(info, takes=dry_stems(tmp_path, info.duration_s, channels=2, takes=2), gain=envelope,
                              gain_rate=100, markers=[(1.0, "seam")], **extra)
    assert timeline.rate == rate and timeline.picture is None and timeline.sound.channels == 1
    files = write_all(tmp_path, timeline)
    assert_fcpxml_valid(files["fcpxml"])
    assert_reads_back(files["otio"], timeline)
    assert_reads_back(files["fcp7"], timeline)
    assert_renders_to_the_frame(files["kdenlive"], tmp_path, timeline)
    assert_plays_the_ducked_music(files["kdenlive"], tmp_path, timeline, envelope)


# --- rates, timecode and keys -------------------------------------------------------------------------

@pytest.mark.parametrize("frame_rate, rate", [
    (23.976023976, Fraction(24000, 1001)), (24.0, Fraction(24)), (25.0, Fraction(25)),
    (29.97002997, Fraction(30000, 1001)), (30.02, Fraction(30)), (59.94, Fraction(60000, 1001)),
    (14.985, Fraction(15)), (10.505, Fraction(11)), (0.4, Fraction(1)), (120.0, Fraction(120)),
])
def test_timeline_rate(frame_rate, rate):
    assert timeline_rate(frame_rate) == rate


@pytest.mark.parametrize("text, rate", [("25", Fraction(25)), ("23.976", Fraction(24000, 1001)), ("29.97", Fraction(30000, 1001)),
                                        ("30000/1001", Fraction(30000, 1001)), (" 12 ", Fraction(12)), (50.0, Fraction(50)),
                                        ("12.5", None), ("0", None), ("-25", None), ("241", None), ("fast", None), ("1/0", None)])
def test_check_rate(text, rate):
    if rate is None:
        with pytest.raises(BadParameterError, match="timeline rate"):
            check_rate(text)
    else:
        assert check_rate(text) == rate


@pytest.mark.parametrize("rate, timecode", [("24000/1001", "01:00:00:00"), ("25", None), ("30000/1001", "00:59:59;28"),
                                            ("30000/1001", "01:00:00:00"), ("60000/1001", "00:59:59;56")])
def test_fcpxml_keeps_one_timecode_format(rate, timecode, tmp_path):
    """The sequence and every clip count timecode one way: drop-frame where the picture's start timecode
    is (29.97 and 59.94 fps), else non-drop; valid against Apple's DTD at each rate."""
    source = clip(tmp_path, rate, seconds=1.0, timecode=timecode)
    info = probe(source)
    timeline = build_timeline(info, takes=dry_stems(tmp_path, info.duration_s, channels=2, takes=2),
                              gain=synthetic_ducking(info.duration_s), gain_rate=100)
    path = write_timeline(tmp_path / "clip.fcpxml", timeline, kind="fcpxml")
    assert_fcpxml_valid(path)
    drop = bool(timecode) and ";" in timecode
    assert timeline.picture.drop_frame == drop
    root = ElementTree.parse(path).getroot()
    formats = [element.get("tcFormat") for element in root.iter() if element.get("tcFormat")]
    assert set(formats) == {"DF" if drop else "NDF"}
    assert len(formats) == 1 + 1 + len(timeline.takes)  # the sequence, the clip and each take


def test_kdenlive_merges_guides_on_one_frame(stems, tmp_path):
    """A seam and a style change on one frame are one guide naming both (Kdenlive keeps one guide a frame:
    ``../shared/reference/kdenlive/saved-guides.kdenlive`` lost one); the most specific kind gives its colour."""
    markers = [(1.0, "seam"), (1.01, "style: tense strings"), (2.0, "cut")]
    timeline = build_timeline(probe(GRID), takes=[(1, stems["one"])], gain=np.ones(301), gain_rate=100,
                              markers=markers)
    assert [marker.frame for marker in timeline.markers] == [25, 25, 50]  # every format but Kdenlive keeps all three
    root = ElementTree.parse(write_timeline(tmp_path / "clip.kdenlive", timeline, kind="kdenlive")).getroot()
    properties = {p.get("name"): p.text for p in root.find("playlist[@id='main_bin']").findall("property")}
    assert json.loads(properties["kdenlive:docproperties.guides"]) == [
        {"comment": "seam + style: tense strings", "pos": 25, "type": 2}, {"comment": "cut", "pos": 50, "type": 1}]


def test_a_muted_original_sound_is_muted_in_every_format(stems, tmp_path):
    """``--mix replace`` and ``music`` deliver no original sound: each timeline holds it muted, not gone."""
    timeline = build_timeline(probe(GRID), takes=[(1, stems["one"]), (2, stems["two"])], gain=np.ones(301),
                              gain_rate=100, sound_muted=True)
    files = write_all(tmp_path, timeline)
    states = kdenlive_track_states(files["kdenlive"])
    assert states["Original sound"] == {"both"} and states["Music take 1"] == {"video"}
    tracks = ElementTree.parse(files["fcp7"]).getroot().findall("sequence/media/audio/track")
    assert [t.findtext("enabled") for t in tracks if t.get("MZ.TrackName") == "Original sound"] == ["FALSE"] * 2
    primary = ElementTree.parse(files["fcpxml"]).getroot().find("event/project/sequence/spine/asset-clip")
    assert [(s.get("srcCh"), s.get("enabled")) for s in primary.findall("audio-channel-source")] == [("1, 2", "0")]
    assert_fcpxml_valid(files["fcpxml"])
    read = otio.adapters.read_from_file(str(files["otio"]))
    assert [(t.name, t.enabled) for t in read.audio_tracks()][:2] == [("Original sound", False),
                                                                      (read.audio_tracks()[1].name, True)]


@pytest.mark.parametrize("rate, fcp_rate", [(Fraction(20), Fraction(24)), (Fraction(25), Fraction(25)),
                                            (Fraction(24000, 1001), Fraction(24000, 1001)), (Fraction(1), Fraction(24)),
                                            (Fraction(60000, 1001), Fraction(60000, 1001)), (Fraction(100), Fraction(60))])
def test_final_cut_project_rate(rate, fcp_rate):
    assert project_rate(rate) == fcp_rate


@pytest.mark.parametrize("text, rate, frame, drop", [
    ("00:59:59;28", Fraction(30000, 1001), 107890, True), ("01:00:00:00", Fraction(24000, 1001), 86400, False),
    ("01:00:00;00", Fraction(60000, 1001), 215784, True), ("00:10:00;00", Fraction(30000, 1001), 17982, True),
    ("00:00:01:19", Fraction(20), 39, False), ("10:00:00:00", Fraction(11), 396000, False),
])
def test_timecode_both_ways(text, rate, frame, drop):
    assert timecode_frame(text, rate) == (frame, drop)
    assert timecode_text(frame, rate, drop_frame=drop) == text


@pytest.mark.parametrize("text", ["01:00:00:25", "1:00", "00:61:00:00", "soon"])
def test_a_timecode_the_rate_does_not_have(text):
    with pytest.raises(ValueError):
        timecode_frame(text, Fraction(25))


def checked_envelope(gain: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """The envelope in dB every 10 ms (and at the last point), floored at -96 dB as the keys are."""
    last = (gain.size - 1) / rate
    times = np.append(np.arange(0.0, last, 0.01), last)
    return times, np.maximum(20 * np.log10(np.maximum(gain[np.round(times * rate).astype(int)], 1e-12)), -96.0)


def line_errors(key_times, key_db, times, level_db) -> np.ndarray:
    """How far straight lines through the keys miss the envelope, drawn in dB or in linear gain (the worse)."""
    in_db = np.interp(times, key_times, key_db)
    in_gain = 20 * np.log10(np.interp(times, key_times, 10 ** (np.asarray(key_db) / 20)))
    return np.maximum(np.abs(in_db - level_db), np.abs(in_gain - level_db))


@pytest.fixture(scope="module")
def speech_envelope():
    """A minute of real speech with pauses ducking the music, per sample."""
    dialogue = read_audio(MEDIA / "speech_silero_test_60s.wav", sample_rate=SR)
    flags = mix.detect_speech(dialogue, sample_rate=SR)
    points = mix.duck_envelope(flags, samples=dialogue.shape[1], sample_rate=SR, options=mix.MixOptions())
    return mix.expand_envelope(points, hop=HOP, start=0, stop=dialogue.shape[1])


def test_keys_without_a_frame_rate_hold_the_tolerance_everywhere(speech_envelope):
    times, level_db = checked_envelope(speech_envelope, SR)
    keys = envelope_keyframes(speech_envelope, sample_rate=SR, tolerance_db=TOLERANCE_DB)
    key_times, key_db = np.array(keys).T
    assert key_times[0] == 0 and key_times[-1] == pytest.approx(times[-1])
    assert line_errors(key_times, key_db, times, level_db).max() <= TOLERANCE_DB + 1e-9
    assert len(keys) < len(times) / 10 and len(keys) < 60  # a minute of dialogue: tens of keys, not thousands


@pytest.mark.parametrize("frame_rate", [None, 24.0, 30000 / 1001])
def test_a_flat_envelope_gives_two_keys(frame_rate):
    keys = envelope_keyframes(np.full(3 * SR + 17, 0.5, np.float32), sample_rate=SR, frame_rate=frame_rate)
    assert len(keys) == 2
    assert keys[0] == (0.0, pytest.approx(-6.0206, abs=1e-3)) and keys[1][1] == pytest.approx(-6.0206, abs=1e-3)


def test_a_tighter_tolerance_takes_more_keys_and_holds():
    flags = np.zeros(400, bool)
    flags[50:120] = flags[200:210] = flags[300:380] = True  # three 30 ms-frame speech runs
    points = mix.duck_envelope(flags, samples=12 * SR, sample_rate=SR, options=mix.MixOptions())
    gain = mix.expand_envelope(points, hop=HOP, start=0, stop=12 * SR)
    times, level_db = checked_envelope(gain, SR)
    counts = []
    for tolerance in (2.0, 0.5, 0.1):
        keys = np.array(envelope_keyframes(gain, sample_rate=SR, tolerance_db=tolerance)).T
        assert line_errors(keys[0], keys[1], times, level_db).max() <= tolerance + 1e-9
        counts.append(keys.shape[1])
    assert counts[0] < counts[1] < counts[2]


# --- bad input -------------------------------------------------------------------------------------------

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
def stems(tmp_path):
    """Three-second stems: two good mono takes, one a few samples short, one too short, one of three channels."""
    made = {}
    for name, samples, channels in (("one", 3 * SR, 1), ("two", 3 * SR, 1), ("short", 3 * SR - 40, 1),
                                    ("second", SR, 1), ("three", 3 * SR, 3)):
        made[name] = tmp_path / f"{name}.wav"
        sf.write(made[name], np.zeros((samples, channels), np.float32), SR)
    return made


@pytest.mark.parametrize("change, error, message", [
    (dict(takes=[]), BadParameterError, "one or more"),
    (dict(takes=[(1, "one"), (1, "two")]), BadParameterError, "distinct"),
    (dict(takes=[(0, "one")]), BadParameterError, "take number"),
    (dict(takes=[(1, "one"), (2, "short")]), BadParameterError, "differ in length"),
    (dict(takes=[(1, "second")]), BadParameterError, "lasts 1.000 s"),
    (dict(takes=[(1, "three")]), BadParameterError, "3 channels"),
    (dict(takes=[(1, "missing")]), UnreadableMediaError, "no such file"),
    (dict(takes=[(1, MEDIA / "noaudio_bug_video_640.mp4")]), UnreadableMediaError, "WAV or FLAC"),
    (dict(markers=[(3.5, "seam")]), BadParameterError, "outside the timeline"),
    (dict(gain=np.array([])), BadParameterError, "gain"),
    (dict(audio_only_rate="12.5"), None, None),  # a video's own rate wins: the choice is not even read
])
def test_bad_timeline_facts(stems, change, error, message):
    settings = dict(takes=[(1, "one")], gain=np.ones(301), gain_rate=100, markers=[(1.0, "seam")])
    settings.update(change)
    settings["takes"] = [(number, name if isinstance(name, Path) else stems.get(name, stems["one"].with_name(name)))
                         for number, name in settings["takes"]]
    if error is None:
        assert build_timeline(probe(GRID), **settings).rate == 25
        return
    with pytest.raises(error, match=message):
        build_timeline(probe(GRID), **settings)


@pytest.mark.parametrize("path, kind, error", [("t.xml", "otio", BadParameterError), ("t.otio", "edl", BadParameterError),
                                               ("exists.fcpxml", "fcpxml", OutputExistsError)])
def test_bad_timeline_files(stems, tmp_path, path, kind, error):
    (tmp_path / "exists.fcpxml").write_text("keep me")
    timeline = build_timeline(probe(GRID), takes=[(1, stems["one"])], gain=np.ones(301), gain_rate=100)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(error):
        write_timeline(tmp_path / path, timeline, kind=kind)
    assert sorted(tmp_path.iterdir()) == before and (tmp_path / "exists.fcpxml").read_text() == "keep me"


def test_without_opentimelineio_the_error_gives_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "opentimelineio", None)  # what an environment without the extra sees
    with pytest.raises(ScoretrackError, match=r"pip install 'scoretrack\[timeline\]'"):
        check_timeline_support(["otio"])
    check_timeline_support(["fcp7", "fcpxml", "kdenlive"])  # the XML kinds need nothing installed


# --- the plan ----------------------------------------------------------------------------------------------

def test_the_plan_sets_each_clips_timeline_rate(tmp_path):
    clip20 = clip(tmp_path, "20", seconds=1.0)
    voice = audio_file(tmp_path / "voice.wav", "-c:a", "pcm_s16le", source=VOICE, duration_s=1.0)
    side = SideOutputs(timelines=tuple(TIMELINE_KINDS), timeline_rate="23.976")
    jobs, settled = plan_jobs([ClipRequest(clip20), ClipRequest(voice)], model_name="tiny", side=side)
    assert not settled and [job.timeline_rate for job in jobs] == [Fraction(20), Fraction(24000, 1001)]
    assert {path.suffix for path in jobs[1].takes[0].side.values()} == {".otio", ".xml", ".fcpxml", ".kdenlive", ".wav"}


def test_the_plan_refuses_what_no_timeline_can_hold(tmp_path):
    blip = tmp_path / "blip.wav"
    sf.write(blip, np.zeros(480, np.float32), SR)  # 10 ms: shorter than a frame at 25 fps
    jobs, settled = plan_jobs([ClipRequest(blip)], model_name="tiny", side=SideOutputs(timelines=("kdenlive",)))
    assert not jobs and "shorter than one frame" in settled[0].error
    with pytest.raises(BadParameterError, match="timeline rate '12.5'"):
        plan_jobs([ClipRequest(blip)], model_name="tiny", side=SideOutputs(timelines=("fcp7",), timeline_rate="12.5"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blip.wav"]


@pytest.mark.parametrize("name, rate", [("grid_bbaf2n_speech.mpg", Fraction(25)), ("speech_jfk.wav", Fraction(25)),
                                        ("edge_fire2_audio_shorter.mp4", Fraction(11))])
def test_source_rate(name, rate):
    assert source_rate(probe(MEDIA / name)) == rate


# --- end to end: the command with the tiny model -------------------------------------------------------

def scoretrack(capsys, *args) -> tuple[int, str, str]:
    """The command, run in this process (the model libraries are loaded once for all four runs)."""
    code = cli.main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("source, kinds", [
    ("clip20", ("fcp7",)),  # failed after generation: "SMPTE timecode does not support this rate"
    ("voice", ("otio",)),  # crashed after generation: 'NoneType' object has no attribute 'frame_rate'
    ("clip20", ("fcp7", "fcpxml", "kdenlive")),
    ("voice", ("fcp7", "fcpxml", "kdenlive")),
])
def test_the_command_writes_every_timeline_of_a_20_fps_clip_and_a_voice_over(source, kinds, tmp_path, tiny_model_dir,
                                                                              capsys):
    path = clip(tmp_path, "20", seconds=2.0) if source == "clip20" else \
        audio_file(tmp_path / "voice over.wav", "-c:a", "pcm_s16le", source=VOICE, duration_s=2.0)
    flags = [flag for kind in kinds for flag in ("--timeline", kind)]
    code, out, err = scoretrack(capsys, path, "--model", tiny_model_dir, "--json", "--window", "4", "--stride", "2.5",
                                *flags)
    assert code == 0, err
    [report] = json.loads(out)
    assert report["status"] == "ok" and Path(report["output"]).is_file()
    assert Path(report["output"]).suffix == (".mp4" if source == "clip20" else ".wav")
    info = probe(path)
    rate = Fraction(20) if source == "clip20" else Fraction(25)
    for kind in kinds:
        file = Path(report["side"][kind])
        assert file.suffix == TIMELINE_KINDS[kind] and file.is_file()
    if "fcp7" in kinds:
        read = otio.adapters.read_from_file(report["side"]["fcp7"])
        assert read.duration().rescaled_to(float(rate)).value == frame_count(info.duration_s, rate)
        assert len(read.video_tracks()) == (source == "clip20") and len(read.audio_tracks()) == 2
    if "otio" in kinds:
        read = otio.adapters.read_from_file(report["side"]["otio"])
        assert [track.name for track in read.tracks][:1] == ["Original sound"]  # no picture track
    if "fcpxml" in kinds:
        assert_fcpxml_valid(Path(report["side"]["fcpxml"]))
    if "kdenlive" in kinds and shutil.which("melt"):
        project = Path(report["side"]["kdenlive"])
        out = render(project, tmp_path / ("full.mkv" if source == "clip20" else "full.wav"))
        with av.open(str(out)) as container:
            assert sum(frame.samples for frame in container.decode(audio=0)) == \
                pytest.approx(frame_count(info.duration_s, rate) / rate * SR, abs=1)


def test_a_side_file_that_fails_to_write_leaves_no_partial_set(tmp_path, scorer):
    """The plan passed; then a timeline cannot be written (its name became a folder): the stems and the
    timelines already written are removed, and the clip has no output."""
    voice = audio_file(tmp_path / "voice.wav", "-c:a", "pcm_s16le", source=VOICE, duration_s=1.5)
    side = SideOutputs(stems=True, timelines=("fcp7", "fcpxml", "kdenlive"))
    options = dataclasses.replace(ScoreOptions(), generation=GenerationOptions(window_s=4, stride_s=2.5))
    jobs, settled = plan_jobs([ClipRequest(voice, options=options)], model_name=scorer.model_name, side=side)
    assert not settled
    jobs[0].takes[0].side["fcpxml"].mkdir()
    [result] = scorer.run_batch(jobs)
    assert result.status == "failed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["voice.scored.fcpxml", "voice.wav"]
