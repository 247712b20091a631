"""The add-on's modal operator in a Blender with a window (under Xvfb), for tests/test_blender_addon.py.

``blender --factory-startup --python blender_modal.py -- CONFIG.json``: Blender's timers start the
operator as a user would (invoked in a Sequencer area, so it runs in the background), watch its progress
while Blender keeps running them, cancel it with the panel's Cancel operator once scoretrack is
generating, and write what they saw to the config's ``facts`` path before quitting.
"""

import json
import shlex
import sys

import bpy

ADDON = "scoretrack_blender"
config = json.load(open(sys.argv[sys.argv.index("--") + 1]))
facts = {"statuses": [], "cancelled": False}


def strips_of(editor):
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def start():
    bpy.ops.preferences.addon_install(filepath=config["zip"], overwrite=True)
    bpy.ops.preferences.addon_enable(module=ADDON)
    preferences = bpy.context.preferences.addons[ADDON].preferences
    preferences.command, preferences.model = shlex.join(config["command"]), config["model"]
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = config["fps"], 1.0
    editor = scene.sequence_editor_create()
    editor.active_strip = strips_of(editor).new_movie(name="picture", filepath=config["movie"], channel=2,
                                                      frame_start=1)
    scene.scoretrack.takes = 1
    window = bpy.context.window_manager.windows[0]
    area = window.screen.areas[0]
    area.type = "SEQUENCE_EDITOR"
    with bpy.context.temp_override(window=window, area=area, region=area.regions[-1]):
        facts["started"] = sorted(bpy.ops.sequencer.scoretrack_score("INVOKE_DEFAULT"))
    bpy.app.timers.register(watch, first_interval=0.1)


def watch():
    """Every tenth of a second while the run lasts (Blender is free between two calls)."""
    run = sys.modules[ADDON]._running.get("run")
    if run is not None:
        if run.status not in facts["statuses"]:
            facts["statuses"].append(run.status)
        if run.percent and not facts["cancelled"]:
            with bpy.context.temp_override(window=bpy.context.window_manager.windows[0]):
                facts["cancelled"] = sorted(bpy.ops.sequencer.scoretrack_cancel()) == ["FINISHED"]
        return 0.1
    facts["strips"] = [strip.name for strip in strips_of(bpy.context.scene.sequence_editor)]
    with open(config["facts"], "w") as handle:
        json.dump(facts, handle)
    bpy.ops.wm.quit_blender()


def guarded(step):
    """A timer that quits Blender on an error (a timer's exception would leave it open)."""
    def call():
        try:
            return step()
        except Exception as error:
            facts["error"] = repr(error)
            with open(config["facts"], "w") as handle:
                json.dump(facts, handle)
            bpy.ops.wm.quit_blender()
    return call


start, watch = guarded(start), guarded(watch)
bpy.app.timers.register(start, first_interval=0.5)
