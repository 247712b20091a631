"""The add-on's scenario inside Blender, for tests/test_blender_addon.py (not a test module itself).

Runs as ``blender -b --factory-startup --python blender_scenario.py -- CONFIG.json`` or, with PyPI's
``bpy`` module, as ``python blender_scenario.py CONFIG.json``: installs and enables the add-on's zip,
puts the movie on a moved and trimmed movie strip, scores it with the add-on's operator (waiting, as a
script must: a modal operator gets no timer events in background mode), mixes the music down, scores
it again (resume), then once with a bad style, and writes what it saw to the config's ``facts`` path.
"""

import json
import os
import shlex
import sys
import time

import bpy

ADDON = "scoretrack_blender"


def strips_of(editor):
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def facts_of(scene) -> dict:
    editor, action = scene.sequence_editor, scene.animation_data.action
    strips = []
    for strip in sorted(strips_of(editor), key=lambda strip: strip.channel):
        fcurve = action.fcurves.find(strip.path_from_id("volume")) if strip.type == "SOUND" else None
        strips.append({
            "name": strip.name, "type": strip.type, "channel": strip.channel, "mute": strip.mute,
            "frame_start": strip.frame_start, "first": strip.frame_final_start, "end": strip.frame_final_end,
            "path": bpy.path.abspath(strip.sound.filepath) if strip.type == "SOUND" else strip.filepath,
            "keys": [[point.co.x, point.co.y, point.interpolation] for point in fcurve.keyframe_points]
            if fcurve else []})
    return {"strips": strips, "markers": sorted([marker.frame, marker.name] for marker in scene.timeline_markers)}


def score(scene) -> float:
    started = time.monotonic()
    bpy.ops.sequencer.scoretrack_score(wait=True)
    return time.monotonic() - started


def mixdown(scene, movie, path: str, accuracy: int) -> None:
    """The scene's sound over the movie strip's visible range, stereo float at 48 kHz, volume animation
    read every ``accuracy`` samples (Blender's default 1024)."""
    scene.frame_start, scene.frame_end = movie.frame_final_start, movie.frame_final_end - 1
    scene.render.ffmpeg.audio_mixrate, scene.render.ffmpeg.audio_channels = 48000, "STEREO"
    settings = {"mixrate": 48000, "channels": "STEREO"}  # 4.x takes them here; 3.4 only from the scene
    known = bpy.ops.sound.mixdown.get_rna_type().properties.keys()
    bpy.ops.sound.mixdown(filepath=path, container="WAV", codec="PCM", format="F32",
                          accuracy=accuracy, **{name: value for name, value in settings.items() if name in known})


def main(config: dict) -> None:
    bpy.ops.preferences.addon_install(filepath=config["zip"], overwrite=True)
    bpy.ops.preferences.addon_enable(module=ADDON)
    preferences = bpy.context.preferences.addons[ADDON].preferences
    preferences.command, preferences.model = shlex.join(config["command"]), config["model"]
    preferences.options = config["options"]
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = config["fps"], 1.0
    editor = scene.sequence_editor_create()
    movie = strips_of(editor).new_movie(name="picture", filepath=config["movie"], channel=2,
                                        frame_start=config["frame_start"])
    movie.frame_offset_start, movie.frame_offset_end = config["trim_start"], config["trim_end"]
    editor.active_strip = movie
    settings = scene.scoretrack
    settings.style, settings.takes, settings.seed = config["style"], config["takes"], config["seed"]
    facts = {"version": list(bpy.app.version), "movie": {"first": movie.frame_final_start,
                                                         "end": movie.frame_final_end}}
    facts["first_s"] = score(scene)
    facts["first"] = facts_of(scene)
    mixdown(scene, movie, config["mixdown"], config["accuracy"])
    stamps = {path: os.stat(path).st_mtime_ns for path in config["watch"]}
    facts["rerun_s"] = score(scene)
    facts["rerun"] = facts_of(scene)
    facts["rerun_touched"] = [path for path, stamp in stamps.items() if os.stat(path).st_mtime_ns != stamp]
    settings.style = "   "
    try:
        score(scene)
        facts["failure"] = None
    except RuntimeError as error:
        facts["failure"] = str(error)
    facts["imported"] = sorted(name for name in ("scoretrack", "torch") if name in sys.modules)
    with open(config["facts"], "w") as handle:
        json.dump(facts, handle)


if __name__ == "__main__":
    arguments = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    with open(arguments[0]) as handle:
        main(json.load(handle))
