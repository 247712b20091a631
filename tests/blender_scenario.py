"""The add-on's scenario inside Blender, for tests/test_blender_addon.py (not a test module itself).

Runs as ``blender -b --factory-startup --python blender_scenario.py -- CONFIG.json`` or, with PyPI's
``bpy`` module, as ``python blender_scenario.py CONFIG.json``: installs and enables the add-on's zip, then
for each of the config's clips, in a scene of its own at the clip's rate: puts the movie on a moved and
trimmed movie strip with its sound strip (as *Add > Movie* does), scores it with the add-on's operator
(waiting, as a script must: a modal operator gets no timer events in background mode), and mixes down
the strip's visible range twice, the music alone (the movie's sound muted) and the whole scene. The
first clip is then scored again (resume) and once with a bad style. What it saw goes to the config's
``facts`` path.
"""

import dataclasses
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
            "volume": strip.volume if strip.type == "SOUND" else None,
            "keys": [[point.co.x, point.co.y, point.interpolation] for point in fcurve.keyframe_points]
            if fcurve else []})
    return {"strips": strips, "markers": sorted([marker.frame, marker.name] for marker in scene.timeline_markers)}


def add_movie(scene, clip: dict):
    """The clip's movie strip, moved and trimmed, and its sound strip on the channel below, moved and
    trimmed with it (``Add > Movie`` with *Sound*, then both strips' handles dragged together)."""
    strips = strips_of(scene.sequence_editor_create())
    sound = strips.new_sound(name="picture sound", filepath=clip["movie"], channel=1, frame_start=clip["frame_start"])
    movie = strips.new_movie(name="picture", filepath=clip["movie"], channel=2, frame_start=clip["frame_start"])
    movie.frame_offset_start, movie.frame_offset_end = clip["trim_start"], clip["trim_end"]
    sound.frame_offset_start = movie.frame_final_start - sound.frame_start
    sound.frame_offset_end = max(0, sound.frame_start + sound.frame_duration - movie.frame_final_end)
    scene.sequence_editor.active_strip = movie
    return movie, sound


def score() -> float:
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


def score_clip(scene, clip: dict, accuracy: int) -> dict:
    """Score one clip in ``scene`` (the context's scene) and mix it down; its facts."""
    scene.render.fps, scene.render.fps_base = clip["fps"], 1.0
    movie, sound = add_movie(scene, clip)
    facts = {"movie": {"first": movie.frame_final_start, "end": movie.frame_final_end}}
    facts["first_s"] = score()
    facts["first"] = facts_of(scene)
    sound.mute = True
    mixdown(scene, movie, clip["music_mixdown"], accuracy)
    sound.mute = False
    mixdown(scene, movie, clip["mixdown"], accuracy)
    return facts


def replace_mode(scene, otio: str) -> dict:
    """The add-on's placement of a score whose delivered file holds no original sound (``--mix replace``),
    then of the mix again: the movie's sound strip as each leaves it, and take 1's first volume key in each."""
    addon = sys.modules[ADDON]
    movie, sound = strips_of(scene.sequence_editor)["picture"], strips_of(scene.sequence_editor)["picture sound"]
    score = addon.core.read_score(otio)
    placed, muted = addon.place(scene, movie, dataclasses.replace(score, original_plays=False))
    facts = {"muted": [strip.name for strip in muted], "after_replace": sound.mute, "key_replace": first_key(placed[0])}
    placed, muted = addon.place(scene, movie, score)
    facts.update(muted_by_mix=[strip.name for strip in muted], after_mix=sound.mute, key_mix=first_key(placed[0]))
    sound.mute = False
    return facts


def first_key(strip) -> float:
    action = strip.id_data.animation_data.action
    return action.fcurves.find(strip.path_from_id("volume")).keyframe_points[0].co.y


def main(config: dict) -> None:
    bpy.ops.preferences.addon_install(filepath=config["zip"], overwrite=True)
    bpy.ops.preferences.addon_enable(module=ADDON)
    preferences = bpy.context.preferences.addons[ADDON].preferences
    preferences.command, preferences.model = shlex.join(config["command"]), config["model"]
    preferences.options = config["options"]
    facts = {"version": list(bpy.app.version), "clips": {}}
    first = config["clips"][0]
    for clip in config["clips"]:
        scene = bpy.context.scene if clip is first else bpy.data.scenes.new(clip["name"])
        with bpy.context.temp_override(scene=scene):
            settings = scene.scoretrack
            settings.style, settings.takes, settings.seed = config["style"], config["takes"], config["seed"]
            facts["clips"][clip["name"]] = score_clip(scene, clip, config["accuracy"])
            otio = next(path for path in clip["watch"] if path.endswith(".otio"))
            facts["clips"][clip["name"]]["replace"] = replace_mode(scene, otio)
    scene, clip, found = bpy.context.scene, first, facts["clips"][first["name"]]
    stamps = {path: os.stat(path).st_mtime_ns for path in clip["watch"]}
    found["rerun_s"] = score()
    found["rerun"] = facts_of(scene)
    found["rerun_touched"] = [path for path, stamp in stamps.items() if os.stat(path).st_mtime_ns != stamp]
    scene.scoretrack.style = "   "
    try:
        score()
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
