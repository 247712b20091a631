"""A Kdenlive project (``.kdenlive``): MLT XML in the document structure Kdenlive 22.12 writes (document
version 1.04; later versions upgrade it on opening), which MLT's ``melt`` also renders as it stands.

Structure: the bin clips (one producer per file, each with its ``kdenlive:id``) listed in the
``main_bin`` playlist with the document properties (guides at seams, cuts and style changes); the
``black_track``; one tractor per timeline track holding two playlists (Kdenlive's mixes need the
second); and the main tractor, which lists the tracks bottom up (the last take first, the picture
last), sums every audio track into the mix through a ``mix`` transition (``a_track=0``, ``sum=1``,
``always_active=1``: MLT sums no other way) and lays the picture over black with ``qtblend``.

The music clips carry Kdenlive's "Volume (keyframable)" effect, MLT's ``volume`` filter with its
``level`` keyed in dB. Two MLT facts, measured with ``melt`` 7.12: the filter reaches a key's value
one frame after the key's time (it ramps each frame from the previous frame's gain), so keys are
written one frame early; and a mono clip in a stereo project is upmixed at -3.01 dB, so a mono clip
(a take, or the original sound) gets a second, flat ``volume`` filter of +3.01 dB and plays at its own
level on both channels, as the mixer places it. Takes after the first (and the original sound under
``--mix replace`` or ``music``) sit on muted tracks, muted as Kdenlive 22.12 saves a track muted in its
header: ``hide="both"`` on the track's own ``<track>`` elements (Kdenlive ignores, and drops on saving,
a ``hide`` on the main tractor's). Guides that fall on one frame become one guide naming each (Kdenlive
keeps one a frame), and the document names an active track. Resources are plain absolute paths.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ElementTree
from fractions import Fraction
from pathlib import Path

from .facts import Timeline
from .xmldoc import xml_child, xml_document

DOCUMENT_VERSION = "1.04"  # Kdenlive 20.08 to 22.12
KDENLIVE_VERSION = "22.12.3"
MLT_VERSION = "7.12.0"
MONO_UPMIX_DB = 10 * math.log10(2)  # what MLT takes off a mono clip in a stereo project (3.0103 dB)
GUIDE_TYPES = {"seam": 0, "cut": 1, "style": 2}  # guide categories (Kdenlive's colours) per marker kind
CLIP_TYPES = {"av": 0, "audio": 1, "video": 2}  # kdenlive:clip_type
AUDIO_ONLY_FRAME = (1920, 1080)
INTERNAL = 237  # Kdenlive's mark on the filters and transitions it adds itself (internal_added)


class _Project:
    """The document as it is built: ids handed out in order, elements appended to ``root``."""

    def __init__(self, timeline: Timeline):
        self.timeline = timeline
        self.root = ElementTree.Element("mlt", LC_NUMERIC="C", producer="main_bin", version=MLT_VERSION)
        self.counts: dict[str, int] = {}

    def next_id(self, kind: str) -> str:
        self.counts[kind] = self.counts.get(kind, -1) + 1
        return f"{kind}{self.counts[kind]}"

    def producer(self, path: Path, bin_id: int, clip_type: str, **extra) -> str:
        """A producer of ``path`` with the properties Kdenlive gives a file clip; returns its id."""
        last = self.timeline.frames - 1
        producer_id = self.next_id("producer")
        element = xml_child(self.root, "producer", id=producer_id, **{"in": 0, "out": last})
        _properties(element, {"length": self.timeline.frames, "eof": "pause", "resource": str(path),
                              "mlt_service": "avformat-novalidate", "seekable": 1, "mute_on_pause": 0,
                              "kdenlive:clipname": path.name, "kdenlive:folderid": -1, "kdenlive:id": bin_id,
                              "kdenlive:clip_type": CLIP_TYPES[clip_type], **extra})
        return producer_id

    def track(self, name: str, *, audio: bool, entry: tuple[str, int] | None, filters=(), muted: bool = False) -> str:
        """A timeline track: a tractor of two playlists, the first holding ``entry`` (producer, bin id)
        from frame 0 to the end with ``filters`` (name -> properties); returns the tractor's id. A muted
        audio track hides both picture and sound of its playlists, as Kdenlive saves a muted track."""
        playlists = []
        for index in range(2):
            playlist = xml_child(self.root, "playlist", id=self.next_id("playlist"))
            if audio:
                _properties(playlist, {"kdenlive:audio_track": 1})
            if index == 0 and entry is not None:
                producer, bin_id = entry
                clip = xml_child(playlist, "entry", producer=producer, **{"in": 0, "out": self.timeline.frames - 1})
                _properties(clip, {"kdenlive:id": bin_id})
                for properties in filters:
                    _properties(xml_child(clip, "filter", id=self.next_id("filter")), properties)
            playlists.append(playlist.get("id"))
        tractor_id = self.next_id("tractor")
        tractor = xml_child(self.root, "tractor", id=tractor_id, **{"in": 0, "out": self.timeline.frames - 1})
        properties = {"kdenlive:audio_track": 1} if audio else {}
        _properties(tractor, {**properties, "kdenlive:track_name": name, "kdenlive:trackheight": 67,
                              "kdenlive:timeline_active": 1, "kdenlive:collapsed": 0, "kdenlive:thumbs_format": "",
                              "kdenlive:audio_rec": ""})
        hide = ("both" if muted else "video") if audio else "audio"
        for playlist in playlists:
            xml_child(tractor, "track", hide=hide, producer=playlist)
        if audio:
            _internal_audio_filters(self, tractor)
        return tractor_id


def render(timeline: Timeline) -> bytes:
    """The Kdenlive project of ``timeline``."""
    project = _Project(timeline)
    _profile(project.root, timeline)
    bins = _bin_clips(project)
    _main_bin(project, bins)
    black = xml_child(project.root, "producer", id="black_track", **{"in": 0, "out": timeline.frames - 1})
    _properties(black, {"length": 2147483647, "eof": "continue", "resource": "black", "aspect_ratio": 1,
                        "mlt_service": "color", "mlt_image_format": "rgba", "set.test_audio": 0})
    source_id = bins[0][1]  # a timeline always has a picture or a sound, so the source is the first bin clip
    tracks = []  # (tractor id, audio), top to bottom
    if timeline.picture:
        producer = project.producer(timeline.source, source_id, _source_kind(timeline), **{"set.test_audio": 1})
        tracks.append((project.track("Picture", audio=False, entry=(producer, source_id)), False))
    if timeline.sound:
        producer = project.producer(timeline.source, source_id, _source_kind(timeline), **{"set.test_image": 1})
        tractor = project.track("Original sound", audio=True, entry=(producer, source_id),
                                filters=_mono_upmix(timeline.sound.channels), muted=timeline.sound_muted)
        tracks.append((tractor, True))
    for take, (_, bin_id) in zip(timeline.takes, bins[1:]):
        producer = project.producer(take.path, bin_id, "audio", **{"set.test_image": 1})
        filters = [_volume_filter(timeline), *_mono_upmix(take.channels)]
        tractor = project.track(f"Music take {take.number}", audio=True, entry=(producer, bin_id), filters=filters,
                                muted=take is not timeline.takes[0])
        tracks.append((tractor, True))
    _main_tractor(project, tracks)
    return xml_document(project.root)


def _profile(root, timeline: Timeline) -> None:
    width, height = (timeline.picture.width, timeline.picture.height) if timeline.picture else AUDIO_ONLY_FRAME
    aspect = Fraction(width, height)
    xml_child(root, "profile", description=f"{width}x{height} {float(timeline.rate):.3f} fps",
              width=width, height=height, progressive=1, sample_aspect_num=1, sample_aspect_den=1,
              display_aspect_num=aspect.numerator, display_aspect_den=aspect.denominator,
              frame_rate_num=timeline.rate.numerator, frame_rate_den=timeline.rate.denominator,
              colorspace=709 if height >= 720 else 601)


def _bin_clips(project: _Project) -> list[tuple[str, int]]:
    """One bin producer per file, the source then each take; returns their (producer id, kdenlive:id)."""
    timeline = project.timeline
    clips = [(timeline.source, _source_kind(timeline))] + [(take.path, "audio") for take in timeline.takes]
    # Kdenlive's own numbering of bin clips starts at 2
    return [(project.producer(path, bin_id, kind), bin_id) for bin_id, (path, kind) in enumerate(clips, start=2)]


def _source_kind(timeline: Timeline) -> str:
    """The source's clip type: picture and sound, picture alone or sound alone."""
    return "av" if timeline.picture and timeline.sound else "video" if timeline.picture else "audio"


def _main_bin(project: _Project, bins) -> None:
    timeline = project.timeline
    playlist = xml_child(project.root, "playlist", id="main_bin")
    _properties(playlist, {
        # the active track, by position from the bottom: take 1's, the music that plays
        "kdenlive:docproperties.activeTrack": len(timeline.takes) - 1,
        "kdenlive:docproperties.audioChannels": 2, "kdenlive:docproperties.compositing": 1,
        "kdenlive:docproperties.disablepreview": 0,
        "kdenlive:docproperties.enableproxy": 0, "kdenlive:docproperties.groups": "[]",
        "kdenlive:docproperties.guides": json.dumps(_guides(timeline)), "kdenlive:docproperties.kdenliveversion": KDENLIVE_VERSION,
        "kdenlive:docproperties.position": 0, "kdenlive:docproperties.version": DOCUMENT_VERSION,
        "kdenlive:docproperties.zonein": 0, "kdenlive:docproperties.zoneout": timeline.frames,
        "kdenlive:documentnotes": "", "xml_retain": 1})
    for producer, _ in bins:
        xml_child(playlist, "entry", producer=producer, **{"in": 0, "out": timeline.frames - 1})


def _guides(timeline: Timeline) -> list[dict]:
    """Kdenlive's guides: one per frame (Kdenlive keeps one guide a frame), naming every marker there
    ("seam + style: tense strings"), in the category of the last kind in ``GUIDE_TYPES`` among them."""
    frames: dict[int, list] = {}
    for marker in timeline.markers:
        frames.setdefault(marker.frame, []).append(marker)
    return [{"comment": " + ".join(marker.label for marker in markers), "pos": frame,
             "type": max(GUIDE_TYPES.get(marker.kind, 0) for marker in markers)}
            for frame, markers in sorted(frames.items())]


def _mono_upmix(channels: int) -> list[dict]:
    """For a mono clip, the flat +3.01 dB volume effect that makes up MLT's upmix to stereo; none otherwise."""
    if channels != 1:
        return []
    return [{"window": 75, "max_gain": "20dB", "level": f"{MONO_UPMIX_DB:.4f}", "mlt_service": "volume",
             "kdenlive_id": "volume", "kdenlive:collapsed": 1}]


def _volume_filter(timeline: Timeline) -> dict:
    """Kdenlive's "Volume (keyframable)": the ducking as ``level`` keys in dB, each one frame early."""
    early: dict[int, float] = {}
    for frame, gain_db in timeline.volume:
        early[max(0, frame - 1)] = gain_db  # the key of frame 1 replaces frame 0's: both land on 0
    level = ";".join(f"{frame}={gain_db:.3f}" for frame, gain_db in sorted(early.items()))
    return {"window": 75, "max_gain": "20dB", "level": level, "mlt_service": "volume", "kdenlive_id": "volume",
            "kdenlive:collapsed": 0}


def _internal_audio_filters(project: _Project, tractor) -> None:
    """The disabled volume, panner and level meter Kdenlive keeps on every audio track."""
    for properties in ({"window": 75, "max_gain": "20dB", "mlt_service": "volume"},
                       {"channel": -1, "mlt_service": "panner", "start": 0.5},
                       {"iec_scale": 0, "mlt_service": "audiolevel", "dbpeak": 1}):
        _properties(xml_child(tractor, "filter", id=project.next_id("filter")),
                    {**properties, "internal_added": INTERNAL, "disable": 1})


def _main_tractor(project: _Project, tracks) -> None:
    """Every track, bottom up, over the black track; audio summed by ``mix``, the picture by ``qtblend``.
    (A muted track is muted inside its own tractor, as Kdenlive saves it: Kdenlive drops a ``hide`` here.)"""
    tractor = xml_child(project.root, "tractor", id=project.next_id("tractor"), global_feed=1,
                        **{"in": 0, "out": project.timeline.frames - 1})
    xml_child(tractor, "track", producer="black_track")
    ordered = tracks[::-1]  # bottom up: the last take, ..., take 1, the original sound, the picture
    for tractor_id, _ in ordered:
        xml_child(tractor, "track", producer=tractor_id)
    for index, (_, is_audio) in enumerate(ordered, start=1):
        transition = xml_child(tractor, "transition", id=project.next_id("transition"))
        if is_audio:
            properties = {"a_track": 0, "b_track": index, "mlt_service": "mix", "kdenlive_id": "mix",
                          "internal_added": INTERNAL, "always_active": 1, "accepts_blanks": 1, "sum": 1}
        else:
            properties = {"a_track": 0, "b_track": index, "version": 0.1, "mlt_service": "qtblend",
                          "always_active": 1, "internal_added": INTERNAL}
        _properties(transition, properties)


def _properties(element, properties: dict) -> None:
    for name, value in properties.items():
        xml_child(element, "property", None if value == "" else value, name=name)
