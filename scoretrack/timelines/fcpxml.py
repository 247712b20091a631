"""FCPXML 1.8 for Final Cut Pro (10.4.1 and later): the picture and its sound as one asset clip in the
primary storyline, the dry music connected under it with ``adjust-volume`` keyframes in dB, markers on
the primary clip at seams, cuts and style changes, and two or more takes as an ``<audition>`` (take 1
the active pick). One ``tcFormat`` throughout: DF where the picture's start timecode is drop-frame
(29.97 and 59.94 fps), NDF elsewhere. The original sound plays at 0 dB; under ``--mix replace`` or
``music`` its audio channels are switched off (``audio-channel-source enabled="0"``).

1.8 is the lowest version whose DTD is in the reference set (``../shared/reference/fcpxml/``) and it
holds everything used here (1.9 moved ``src`` into ``<media-rep>``); documents are valid against it.

Final Cut Pro projects run at 23.98, 24, 25, 29.97, 30, 50, 59.94 or 60 fps, so the project takes the
nearest of those in the clip's family: NTSC rates stay, whole rates go to the nearest whole one (20,
15 and 12 fps to 24; 48 to 50; 120 to 60; a phone's 10.5 fps, timed as 11, to 24). Assets keep their
own rate; Final Cut Pro conforms them. Times are exact rationals ("1001/30000s").
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from fractions import Fraction

from .facts import Timeline
from .xmldoc import xml_child, xml_document

VERSION = "1.8"
WHOLE_RATES = (24, 25, 30, 50, 60)
NTSC_RATES = tuple(Fraction(base * 1000, 1001) for base in (24, 30, 60))
AUDIO_ONLY_FRAME = (1920, 1080)  # the project's frame when the source has no picture


def project_rate(rate: Fraction) -> Fraction:
    """The Final Cut Pro project rate for a timeline rate: itself if NTSC, else the nearest whole one."""
    if rate in NTSC_RATES:
        return rate
    return Fraction(min(WHOLE_RATES, key=lambda whole: (abs(whole - rate), whole)))


def render(timeline: Timeline) -> bytes:
    """The FCPXML 1.8 document of ``timeline``."""
    rate = project_rate(timeline.rate)
    root = ElementTree.Element("fcpxml", version=VERSION)
    source_format = _resources(xml_child(root, "resources"), timeline, rate)
    project = xml_child(xml_child(root, "event", name=timeline.name), "project", name=f"{timeline.name} (scored)")
    length = _time(Fraction(_frames(timeline.frames, timeline, rate)) / rate)
    picture = timeline.picture
    tc_format = "DF" if picture and picture.drop_frame else "NDF"  # one format in the sequence and its clips
    sequence = xml_child(project, "sequence", format="r1", duration=length, tcStart="0s", tcFormat=tc_format,
                         audioLayout="stereo", audioRate="48k")
    origin = Fraction(picture.start_frame) / timeline.rate if picture else Fraction(0)
    primary = {"ref": "r3", "offset": "0s", "name": timeline.source.stem, "start": _time(origin), "duration": length,
               "tcFormat": tc_format}
    if source_format != "r1":
        primary["format"] = source_format
    if timeline.sound:
        primary["audioRole"] = "dialogue"
    clip = xml_child(xml_child(sequence, "spine"), "asset-clip", **primary)
    _music(clip, timeline, rate, offset=_time(origin), length=length, tc_format=tc_format)
    for marker in timeline.markers:
        xml_child(clip, "marker", start=_time(origin + Fraction(_frames(marker.frame, timeline, rate)) / rate),
                  duration=_time(1 / rate), value=marker.label)
    if timeline.sound and timeline.sound_muted:  # the original's sound switched off, as the inspector does
        channels = ", ".join(str(channel) for channel in range(1, timeline.sound.channels + 1))
        xml_child(clip, "audio-channel-source", srcCh=channels, enabled=0)
    return xml_document(root, doctype="fcpxml")


def _frames(count: int, timeline: Timeline, rate: Fraction) -> int:
    """Timeline frames as project frames (the nearest)."""
    return math.floor(Fraction(count) * rate / timeline.rate + Fraction(1, 2))


def _resources(resources, timeline: Timeline, rate: Fraction) -> str:
    """The formats (r1: the project's; r2: the source's, if its rate differs) and the assets (r3: the
    source, r4...: the takes); returns the source's format id."""
    picture = timeline.picture
    width, height = (picture.width, picture.height) if picture else AUDIO_ONLY_FRAME
    xml_child(resources, "format", id="r1", frameDuration=_time(1 / rate), width=width, height=height)
    source_format = "r1"
    if picture and timeline.rate != rate:
        source_format = "r2"
        xml_child(resources, "format", id="r2", frameDuration=_time(1 / timeline.rate), width=width, height=height)
    start = _time(Fraction(picture.start_frame) / timeline.rate) if picture else "0s"
    source = {"id": "r3", "name": timeline.source.stem, "src": timeline.source.as_uri(), "start": start,
              "duration": _time(Fraction(timeline.frames) / timeline.rate)}
    if picture:
        source.update(hasVideo=1, format=source_format)
    if timeline.sound:
        source.update(hasAudio=1, audioSources=1, audioChannels=timeline.sound.channels,
                      audioRate=timeline.sound.sample_rate)
    xml_child(resources, "asset", **source)
    for index, take in enumerate(timeline.takes):
        xml_child(resources, "asset", id=f"r{4 + index}", name=take.path.stem, src=take.path.as_uri(), start="0s",
                  duration=_time(Fraction(take.samples, take.sample_rate)), hasAudio=1, audioSources=1,
                  audioChannels=take.channels, audioRate=take.sample_rate)
    return source_format


def _music(clip, timeline: Timeline, rate: Fraction, *, offset: str, length: str, tc_format: str) -> None:
    """The takes connected below the primary clip: one asset clip, or an audition of them (take 1 first)."""
    keys = {_frames(frame, timeline, rate): gain_db for frame, gain_db in timeline.volume}  # the last on a frame wins
    music = clip if len(timeline.takes) == 1 else xml_child(clip, "audition", lane=-1, offset=offset)
    for index, take in enumerate(timeline.takes):
        attributes = {"lane": -1} if music is clip else {}
        element = xml_child(music, "asset-clip", ref=f"r{4 + index}", **attributes, offset=offset,
                            name=f"Music take {take.number}", start="0s", duration=length, tcFormat=tc_format,
                            audioRole="music")
        animation = xml_child(xml_child(xml_child(element, "adjust-volume"), "param", name="amount"),
                              "keyframeAnimation")
        for frame, gain_db in sorted(keys.items()):
            xml_child(animation, "keyframe", time=_time(Fraction(frame) / rate), value=f"{gain_db:.2f}dB",
                      curve="linear")


def _time(seconds: Fraction) -> str:
    """FCPXML's time: ``0s``, whole seconds ``5s``, or an exact fraction ``1001/30000s``."""
    seconds = Fraction(seconds)
    if seconds.denominator == 1:
        return f"{seconds.numerator}s"
    return f"{seconds.numerator}/{seconds.denominator}s"
