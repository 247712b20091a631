"""Final Cut Pro 7 XML ("xmeml" 4) written as Premiere Pro writes it, for Premiere Pro and DaVinci Resolve.

Premiere's own exports (``../shared/reference/xmeml/``) set the shape: every ``<file>`` names its
media (``samplecharacteristics``: frame size for the picture, depth and sample rate for sound, and a
channel count); paths are ``file://localhost/`` URLs, percent-encoded; a stereo (or wider) sound is one
``clipitem`` per channel (``sourcetrack/trackindex`` 1, 2, ...) on "exploded" tracks, linked with each
other and with the picture; the sequence's ``<format>`` holds the frame size and its audio outputs.

The music's volume is an "Audio Levels" filter whose ``level`` keys hold linear gain (1 = 0 dB, at most
3.98109 = +12 dB) on whole frames counted from the media's first frame. A rate is a ``timebase``
integer and an ``ntsc`` flag, so every :func:`scoretrack.timelines.timeline_rate` fits as it is.
"""

from __future__ import annotations

import urllib.parse
import uuid
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .facts import Timeline, timecode_text
from .xmldoc import xml_child, xml_document

LEVEL_MAX_GAIN = 3.98109  # +12 dB, the top of FCP 7's Audio Levels "level" parameter
TICKS_PER_SECOND = 254016000000  # Premiere's time unit (pproTicksIn/Out)
SOURCE_SAMPLE_BITS = 16  # what Premiere says of compressed sound (AAC, Opus) in a video file


@dataclass(frozen=True)
class _Use:
    """One clipitem: a file's picture, or one channel of its sound, on a track of the sequence."""

    item: int  # clipitem-N
    media: str  # "video" or "audio"
    track: int  # 1-based, among the sequence's tracks of that media
    channel: int  # source channel (1-based); 0 for the picture
    group: tuple[int, ...]  # the clipitems linked together (picture and its sound, or one take's channels)


def render(timeline: Timeline) -> bytes:
    """The FCP 7 XML document of ``timeline``, as Premiere Pro writes one."""
    root = ElementTree.Element("xmeml", version="4")
    sequence = xml_child(root, "sequence", id="sequence-1")
    xml_child(sequence, "uuid", uuid.uuid5(uuid.NAMESPACE_URL, timeline.source.as_uri()))
    xml_child(sequence, "duration", timeline.frames)
    _rate(sequence, timeline.rate)
    xml_child(sequence, "name", timeline.name)
    media = xml_child(sequence, "media")
    source_uses, take_uses = _layout(timeline)
    uses = {use.item: use for use in source_uses + [use for take in take_uses for use in take]}
    video = xml_child(media, "video")
    _video_format(xml_child(video, "format"), timeline)
    written: set[str] = set()
    for use in source_uses:
        if use.media == "video":
            track = xml_child(video, "track")
            _clipitem(track, timeline, use, uses, written=written)
            xml_child(track, "enabled", "TRUE")
            xml_child(track, "locked", "FALSE")
    audio = xml_child(media, "audio")
    _audio_format(audio)
    sound = [use for use in source_uses if use.media == "audio"]
    _audio_tracks(audio, timeline, sound, uses, written, name="Original sound", enabled=not timeline.sound_muted)
    for take, channels in zip(timeline.takes, take_uses):
        _audio_tracks(audio, timeline, channels, uses, written, name=f"Music take {take.number}",
                      enabled=take is timeline.takes[0], take=take)
    _timecode(sequence, 0, timeline.rate, drop_frame=False)
    for marker in timeline.markers:
        element = xml_child(sequence, "marker")
        xml_child(element, "comment", "")
        xml_child(element, "name", marker.label)
        xml_child(element, "in", marker.frame)
        xml_child(element, "out", -1)
    xml_child(xml_child(sequence, "labels"), "label2", "Forest")
    return xml_document(root, doctype="xmeml")


def _layout(timeline: Timeline) -> tuple[list[_Use], list[list[_Use]]]:
    """Every clipitem with its track: the picture on V1; the sound's channels on A1, A2, ...; then each
    take's channels on the next audio tracks. Items are numbered in that order."""
    count = iter(range(1, 10_000))
    channels = timeline.sound.channels if timeline.sound else 0
    source = [(next(count), "video", 1, 0)] if timeline.picture else []
    source += [(next(count), "audio", c, c) for c in range(1, channels + 1)]
    group = tuple(item for item, *_ in source)
    source_uses = [_Use(item, media, track, channel, group) for item, media, track, channel in source]
    take_uses, track = [], channels
    for take in timeline.takes:
        items = [next(count) for _ in range(take.channels)]
        take_uses.append([_Use(item, "audio", track + c, c, tuple(items)) for c, item in enumerate(items, 1)])
        track += take.channels
    return source_uses, take_uses


def _audio_tracks(audio, timeline: Timeline, uses: list[_Use], all_uses: dict, written: set, *, name: str,
                  enabled: bool, take=None) -> None:
    """The exploded tracks of one sound: stereo as a pair (outputs 1 and 2), mono or wider as mono tracks."""
    pair = len(uses) == 2
    for index, use in enumerate(uses):
        attributes = {"MZ.TrackName": name, "currentExplodedTrackIndex": index if pair else 0,
                      "totalExplodedTrackCount": 2 if pair else 1, "premiereTrackType": "Stereo" if pair else "Mono"}
        if not pair:
            attributes = {"monotrack": "TRUE", **attributes}
        track = xml_child(audio, "track", **attributes)
        _clipitem(track, timeline, use, all_uses, take=take, written=written)
        xml_child(track, "enabled", "TRUE" if enabled else "FALSE")
        xml_child(track, "locked", "FALSE")
        xml_child(track, "outputchannelindex", index + 1 if pair else 1)


def _clipitem(track, timeline: Timeline, use: _Use, uses: dict, *, written: set, take=None) -> None:
    """One clipitem as Premiere writes it: of the source file (``take`` None) or of a music take."""
    path = timeline.source if take is None else take.path
    attributes = {"frameBlend": "FALSE"}
    if use.media == "audio":
        channels = take.channels if take is not None else timeline.sound.channels
        attributes["premiereChannelType"] = "stereo" if channels == 2 else "mono"
    clip = xml_child(track, "clipitem", id=f"clipitem-{use.item}", **attributes)
    master = 1 if take is None else 2 + timeline.takes.index(take)
    xml_child(clip, "masterclipid", f"masterclip-{master}")
    xml_child(clip, "name", path.name)
    xml_child(clip, "enabled", "TRUE")
    xml_child(clip, "duration", timeline.frames)
    _rate(clip, timeline.rate)
    for tag, value in (("start", 0), ("end", timeline.frames), ("in", 0), ("out", timeline.frames)):
        xml_child(clip, tag, value)
    xml_child(clip, "pproTicksIn", 0)
    xml_child(clip, "pproTicksOut", round(TICKS_PER_SECOND * timeline.frames / timeline.rate))
    if use.media == "video":
        for tag, value in (("alphatype", "none"), ("pixelaspectratio", "square"), ("anamorphic", "FALSE")):
            xml_child(clip, tag, value)
    file_id = f"file-{master}"
    if file_id in written:
        xml_child(clip, "file", id=file_id)
    else:
        written.add(file_id)
        _file(xml_child(clip, "file", id=file_id), timeline, path, take=take)
    sourcetrack = xml_child(clip, "sourcetrack")
    xml_child(sourcetrack, "mediatype", use.media)
    if use.media == "audio":
        xml_child(sourcetrack, "trackindex", use.channel)
        # the original sound keeps its level: 0 dB, keyed at both ends as Premiere keys a level
        volume = timeline.volume if take is not None else ((0, 0.0), (timeline.frames, 0.0))
        _element_from_dict(clip, "filter", audio_levels_filter(volume))
    for item in use.group:
        linked = uses[item]
        link = xml_child(clip, "link")
        xml_child(link, "linkclipref", f"clipitem-{item}")
        xml_child(link, "mediatype", linked.media)
        xml_child(link, "trackindex", linked.track)
        xml_child(link, "clipindex", 1)
        if linked.media == "audio":
            xml_child(link, "groupindex", 1)
    logging = xml_child(clip, "logginginfo")
    for tag in ("description", "scene", "shottake", "lognote"):
        xml_child(logging, tag, "")
    xml_child(xml_child(clip, "labels"), "label2", "Iris" if use.media == "video" else "Caribbean")


def _file(element, timeline: Timeline, path: Path, *, take) -> None:
    """A file's identity and media, as Premiere describes it the first time a sequence uses it."""
    xml_child(element, "name", path.name)
    xml_child(element, "pathurl", path_url(path))
    _rate(element, timeline.rate)
    xml_child(element, "duration", timeline.frames)
    picture = timeline.picture if take is None else None
    start = picture.start_frame if picture else 0
    timecode = _timecode(element, start, timeline.rate, drop_frame=bool(picture and picture.drop_frame))
    xml_child(xml_child(timecode, "reel"), "name", "")
    media = xml_child(element, "media")
    if picture:
        characteristics = xml_child(xml_child(media, "video"), "samplecharacteristics")
        _rate(characteristics, timeline.rate)
        for tag, value in (("width", picture.width), ("height", picture.height), ("anamorphic", "FALSE"),
                           ("pixelaspectratio", "square"), ("fielddominance", "none")):
            xml_child(characteristics, tag, value)
    if take is not None:
        depth, sample_rate, channels = take.bits, take.sample_rate, take.channels
    elif timeline.sound:
        depth, sample_rate, channels = SOURCE_SAMPLE_BITS, timeline.sound.sample_rate, timeline.sound.channels
    else:
        return
    sound = xml_child(media, "audio")
    characteristics = xml_child(sound, "samplecharacteristics")
    xml_child(characteristics, "depth", depth)
    xml_child(characteristics, "samplerate", sample_rate)
    xml_child(sound, "channelcount", channels)


def _video_format(element, timeline: Timeline) -> None:
    """The sequence's frame: the picture's size (1920 x 1080 for a voice-over, which has none)."""
    width, height = (timeline.picture.width, timeline.picture.height) if timeline.picture else (1920, 1080)
    characteristics = xml_child(element, "samplecharacteristics")
    _rate(characteristics, timeline.rate)
    for tag, value in (("width", width), ("height", height), ("anamorphic", "FALSE"),
                       ("pixelaspectratio", "square"), ("fielddominance", "none"), ("colordepth", 24)):
        xml_child(characteristics, tag, value)


def _audio_format(audio) -> None:
    """The sequence's sound: 48 kHz, two outputs (left and right)."""
    xml_child(audio, "numOutputChannels", 2)
    characteristics = xml_child(xml_child(audio, "format"), "samplecharacteristics")
    xml_child(characteristics, "depth", 16)
    xml_child(characteristics, "samplerate", 48000)
    outputs = xml_child(audio, "outputs")
    for index in (1, 2):
        group = xml_child(outputs, "group")
        xml_child(group, "index", index)
        xml_child(group, "numchannels", 1)
        xml_child(group, "downmix", 0)
        xml_child(xml_child(group, "channel"), "index", index)


def _rate(parent, rate: Fraction) -> None:
    element = xml_child(parent, "rate")
    xml_child(element, "timebase", round(rate))
    xml_child(element, "ntsc", "TRUE" if rate.denominator == 1001 else "FALSE")


def _timecode(parent, frame: int, rate: Fraction, *, drop_frame: bool):
    element = xml_child(parent, "timecode")
    _rate(element, rate)
    xml_child(element, "string", timecode_text(frame, rate, drop_frame=drop_frame))
    xml_child(element, "frame", frame)
    xml_child(element, "displayformat", "DF" if drop_frame else "NDF")
    return element


def audio_levels_filter(volume) -> dict:
    """FCP 7's "Audio Levels" filter for ``volume`` keys (frame, dB), as a nested dictionary: the
    ``<filter>`` element here, and OTIO's ``metadata["fcp_xml"]["filter"]`` in the ``.otio``."""
    parameter = {"parameterid": "level", "name": "Level", "valuemin": "0", "valuemax": f"{LEVEL_MAX_GAIN}",
                 "value": audio_level(volume[0][1]),
                 "keyframe": [{"when": str(frame), "value": audio_level(gain_db)} for frame, gain_db in volume]}
    return {"effect": {"name": "Audio Levels", "effectid": "audiolevels", "effectcategory": "audiolevels",
                       "effecttype": "audiolevels", "mediatype": "audio", "parameter": parameter}}


def audio_level(gain_db: float) -> str:
    """A gain in dB as an Audio Levels value: linear gain, at most +12 dB."""
    return f"{min(10 ** (gain_db / 20), LEVEL_MAX_GAIN):.6g}"


def _element_from_dict(parent, tag: str, value) -> None:
    """``value`` (a dict of children, a list of repeated elements, or text) as XML under ``parent``."""
    if isinstance(value, list):
        for item in value:
            _element_from_dict(parent, tag, item)
    elif isinstance(value, dict):
        element = xml_child(parent, tag)
        for key, item in value.items():
            _element_from_dict(element, key, item)
    else:
        xml_child(parent, tag, value)


def path_url(path: Path) -> str:
    """``file://localhost/...``, percent-encoded, as Premiere and Final Cut Pro 7 write paths."""
    return "file://localhost" + urllib.parse.quote(str(path))
