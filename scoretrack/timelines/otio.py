"""OpenTimelineIO's JSON (``.otio``): the tracks, markers and takes as OTIO holds them, the ducking twice.

OTIO has no standard for animated volume, so the music clips carry the keys two ways: an
``Effect`` named ``volume`` (``effect_name="volume"``) whose ``metadata["scoretrack"]["keyframes"]``
lists ``{frame, time_s, gain_db}``, and, as before, the FCP 7 "Audio Levels" filter in
``metadata["fcp_xml"]`` (which OTIO's ``fcp_xml`` adapter turns into XML) with the same keys in
``metadata["scoretrack"]["volume_keyframes"]``. Every audio clip's ``metadata["scoretrack"]["gain_db"]``
is its flat gain (0 dB: the stems are at their level against the original, and the loudness gain is
left to the editor), which the keys add to. Takes after the first are disabled tracks, and so is the
original sound under ``--mix replace`` or ``music``.
"""

from __future__ import annotations

from .facts import Timeline
from .fcp7 import audio_levels_filter

CLIP_GAIN_DB = 0.0  # every clip's flat gain: the timeline is the delivered mix without its loudness gain


def render(timeline: Timeline) -> bytes:
    """The ``.otio`` document (OpenTimelineIO JSON) of ``timeline``."""
    import opentimelineio as otio

    return otio.adapters.write_to_string(_otio_timeline(otio, timeline), adapter_name="otio_json").encode()


def _otio_timeline(otio, timeline: Timeline):
    rate = float(timeline.rate)

    def at(frame: int):
        return otio.opentime.RationalTime(frame, rate)

    def track(label: str, kind, path, *, start: int = 0, metadata=None, file_metadata=None, effects=()):
        extent = otio.opentime.TimeRange(at(start), at(timeline.frames))
        reference = otio.schema.ExternalReference(target_url=path.as_uri(), available_range=extent)
        reference.name = path.name
        if file_metadata:
            reference.metadata["fcp_xml"] = file_metadata
        clip = otio.schema.Clip(name=path.name, media_reference=reference, source_range=extent,
                                metadata=metadata or {}, effects=list(effects))
        return otio.schema.Track(name=label, kind=kind, children=[clip])

    Video, Audio = otio.schema.TrackKind.Video, otio.schema.TrackKind.Audio
    source_audio = {"sourcetrack": {"mediatype": "audio", "trackindex": "1"}}
    picture = timeline.picture
    start = picture.start_frame if picture else 0
    source_file = {"timecode": {"displayformat": "DF"}} if picture and picture.drop_frame else None
    result = otio.schema.Timeline(name=timeline.name, global_start_time=at(0))
    if picture:
        result.tracks.append(track("Picture", Video, timeline.source, start=start, file_metadata=source_file))
    if timeline.sound:
        sound = track("Original sound", Audio, timeline.source, start=start, file_metadata=source_file,
                      metadata={"fcp_xml": source_audio, "scoretrack": {"gain_db": CLIP_GAIN_DB}})
        sound.enabled = not timeline.sound_muted
        result.tracks.append(sound)
    keys = [{"frame": frame, "time_s": time_s, "gain_db": gain_db}
            for (frame, gain_db), (time_s, _) in zip(timeline.volume, timeline.volume_s)]
    for take in timeline.takes:
        volume = otio.schema.Effect(name="volume", effect_name="volume",
                                    metadata={"scoretrack": {"unit": "dB", "keyframes": keys}})
        metadata = {"fcp_xml": {**source_audio, "filter": audio_levels_filter(timeline.volume)},
                    "scoretrack": {"take": take.number, "gain_db": CLIP_GAIN_DB, "volume_keyframes": [
                        {"time_s": key["time_s"], "gain_db": key["gain_db"]} for key in keys]}}
        # the adapter guesses a file's media from its extension and would call a .flac stem video
        stem_file = {"media": {"audio": {"channelcount": str(take.channels)}}}
        music = track(f"Music take {take.number} (dry, ducking as keyframes)", Audio, take.path, metadata=metadata,
                      file_metadata=stem_file, effects=[volume])
        music.enabled = take is timeline.takes[0]
        result.tracks.append(music)
    for marker in timeline.markers:
        marked = otio.opentime.TimeRange(at(marker.frame), at(0))
        result.tracks.markers.append(otio.schema.Marker(name=marker.label, marked_range=marked))
    return result

