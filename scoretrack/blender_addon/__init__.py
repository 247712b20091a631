"""scoretrack in Blender's Video Sequence Editor: score the active movie strip, then place the music.

A sidebar panel (Sequencer > Sidebar > scoretrack) holds the style, the takes and the seed; the add-on's
preferences hold the scoretrack command and the model. The operator runs the command in the background
(a modal timer polls it; Esc or the panel's Cancel stops it, and scoretrack leaves nothing half made),
shows its progress lines in the status bar, and places what it wrote: each take's dry music as a sound
strip on a channel of its own (take 1 playing, the others muted), the ducking as volume keys, and
markers at seams, cuts and style changes, all where the movie strip shows its source. It never
imports scoretrack or torch: it talks to the command (``core.py`` is the part without ``bpy``).

Blender 3.4 to 4.5: 4.4 renamed ``sequences`` to ``strips`` (and ``SoundSequence`` to ``SoundStrip``);
:func:`_strips` and :func:`_all_strips` take whichever the running Blender has.
"""

import os

import bpy
from bpy.props import BoolProperty, IntProperty, PointerProperty, StringProperty

from . import core

bl_info = {
    "name": "scoretrack",
    "author": "scoretrack",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "Sequencer > Sidebar > scoretrack",
    "description": "Score the active movie strip with MusicGen: music takes, ducking keys and markers",
    "category": "Sequencer",
}

OWNER = "scoretrack_movie"  # custom property naming the movie strip a music strip was placed for
POLL_S = 0.25  # how often the modal operator looks at the running command
_running: dict = {}  # "run": the core.Run in progress (one at a time)


def _strips(editor):
    """The editor's top-level strips (``strips`` from Blender 4.4, ``sequences`` before)."""
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def _all_strips(editor):
    return editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all


def _active_movie(context):
    editor = context.scene.sequence_editor if context.scene else None
    strip = editor.active_strip if editor else None
    return strip if strip is not None and strip.type == "MOVIE" else None


def _preferences(context):
    return context.preferences.addons[__name__].preferences


def _placement(scene, movie) -> core.Placement:
    """Where ``movie`` shows its source; refuses a scene whose rate would play it out of step.

    Raises
    ------
    ValueError
        The scene's frame rate is not the movie's (Blender plays a movie frame per scene frame).
    """
    fps = scene.render.fps / scene.render.fps_base
    if abs(movie.fps - fps) > 1e-4 * fps:
        raise ValueError(f"the scene runs at {fps:g} fps and movie strip {movie.name!r} at {movie.fps:g} fps: set "
                         f"Output Properties > Format > Frame Rate to {movie.fps:g} so picture and music keep in step")
    return core.Placement(origin=movie.frame_start - movie.animation_offset_start, fps=fps,
                          first=movie.frame_final_start, end=movie.frame_final_end)


def _fcurve(scene, data_path: str):
    """The scene's F-curve animating ``data_path``, or None."""
    action = scene.animation_data.action if scene.animation_data else None
    if action is None:
        return None
    return action.fcurves.find(data_path)


def _clear_keys(scene, data_path: str) -> None:
    """Remove the keys a strip of this name kept from before (a removed strip's F-curve stays)."""
    fcurve = _fcurve(scene, data_path)
    while fcurve is not None and len(fcurve.keyframe_points):
        fcurve.keyframe_points.remove(fcurve.keyframe_points[-1], fast=True)


def _mono_sound(filepath: str) -> bool:
    """Whether Blender reads ``filepath``'s sound as mono (False for a file without sound)."""
    known = set(bpy.data.sounds)
    sound = bpy.data.sounds.load(filepath, check_existing=True)
    mono = sound.channels == "MONO"
    if sound not in known:
        bpy.data.sounds.remove(sound)
    return mono


def _own_sound(editor, movie) -> list:
    """The sound strips that play ``movie``'s file (as *Add > Movie* puts one below it), not ours."""
    movie_path = os.path.realpath(bpy.path.abspath(movie.filepath))
    return [strip for strip in _strips(editor) if strip.type == "SOUND" and strip.get(OWNER) is None
            and os.path.realpath(bpy.path.abspath(strip.sound.filepath)) == movie_path]


def place(scene, movie, score: core.Score) -> tuple[list, list]:
    """Put ``score``'s takes, keys and markers where ``movie`` sits; replaces music placed for it before.

    A mono take is made up for Blender's mono-to-stereo loss unless the movie's own sound is mono and
    plays too: the delivered mix is then mono, and Blender plays the movie's sound strip with the same
    loss, so leaving both as they are keeps the balance (without the original the delivered mix is
    stereo). The movie's own sound strips are left as they are, but muted when the delivered file holds
    no original sound (``--mix replace`` or ``music``), as every timeline mutes that track; they are
    never unmuted.

    Returns the music strips, take 1 first, and the movie's sound strips muted now.
    """
    placement = _placement(scene, movie)
    mono_movie = _mono_sound(bpy.path.abspath(movie.filepath))
    strips = _strips(scene.sequence_editor)
    muted = [] if score.original_plays else [strip for strip in _own_sound(scene.sequence_editor, movie)
                                             if not strip.mute]
    for strip in muted:
        strip.mute = True
    for strip in [strip for strip in strips if strip.get(OWNER) == movie.name]:
        strips.remove(strip)
    channel = 1 + max(strip.channel for strip in strips)
    placed = []
    for index, take in enumerate(score.takes):
        strip = strips.new_sound(name=f"{movie.name} take {take.number}", filepath=str(take.path),
                                 channel=channel + index, frame_start=round(placement.origin))
        strip[OWNER] = movie.name
        strip.frame_offset_start = max(0, placement.first - strip.frame_start)
        strip.frame_offset_end = max(0, strip.frame_start + strip.frame_duration - placement.end)
        strip.mute = not take.enabled
        data_path = strip.path_from_id("volume")
        _clear_keys(scene, data_path)
        keys = placement.volume_keys(score.keys, gain_db=take.gain_db,
                                     mono=strip.sound.channels == "MONO" and not (mono_movie and score.original_plays))
        for frame, volume in keys:
            strip.volume = volume
            strip.keyframe_insert("volume", frame=frame)
        for point in _fcurve(scene, data_path).keyframe_points:
            point.interpolation = "LINEAR"
        placed.append(strip)
    present = {(marker.frame, marker.name) for marker in scene.timeline_markers}
    for frame, label in placement.markers(score.markers):
        if (frame, label[:63]) not in present:
            scene.timeline_markers.new(label[:63], frame=frame)
    return placed, muted


class ScoretrackPreferences(bpy.types.AddonPreferences):
    bl_idname = __name__

    command: StringProperty(name="Command", default="scoretrack",
                            description="How to run scoretrack, e.g. scoretrack or /path/venv/bin/scoretrack")
    model: StringProperty(name="Model", default="facebook/musicgen-melody",
                          description="Hub id or local folder of the MusicGen model (scoretrack --model)")
    options: StringProperty(name="Other options", default="",
                            description="More scoretrack options, e.g. --device cuda --duck-depth -15")

    def draw(self, context):
        for name in ("command", "model", "options"):
            self.layout.prop(self, name)


class ScoretrackSettings(bpy.types.PropertyGroup):
    style: StringProperty(name="Style", default="cinematic orchestral score",
                          description="Text description of the music (scoretrack --style)")
    takes: IntProperty(name="Takes", default=2, min=1, max=16,
                       description="Takes to choose from: take 1 plays, the others wait muted")
    seed: IntProperty(name="Seed", default=0, min=0, description="Same seed, same music")


class SCORETRACK_OT_score(bpy.types.Operator):
    """Score the active movie strip with scoretrack and place the music, its ducking keys and markers"""

    bl_idname = "sequencer.scoretrack_score"
    bl_label = "Score movie strip"

    wait: BoolProperty(name="Wait", default=False, options={"HIDDEN", "SKIP_SAVE"},
                       description="Run to the end before returning (scripts; background mode always waits)")

    @classmethod
    def poll(cls, context):
        return _active_movie(context) is not None and "run" not in _running

    def execute(self, context):
        movie, settings, preferences = _active_movie(context), context.scene.scoretrack, _preferences(context)
        try:
            _placement(context.scene, movie)
            argv = core.command_line(preferences.command, bpy.path.abspath(movie.filepath), model=preferences.model,
                                     style=settings.style, takes=settings.takes, seed=settings.seed,
                                     extra=preferences.options)
            self._run, self._movie = core.Run(argv), movie.name
        except (ValueError, OSError) as error:
            self.report({"ERROR"}, f"scoretrack: {error}")
            return {"CANCELLED"}
        if self.wait or bpy.app.background:
            return self._finish(context, self._run.wait())
        _running["run"] = self._run
        self._timer = context.window_manager.event_timer_add(POLL_S, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            self._run.cancel()
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        code = self._run.poll()
        if code is None:
            context.workspace.status_text_set(f"{self._run.status}  (Esc cancels)")
            for area in context.screen.areas:
                if area.type == "SEQUENCE_EDITOR":
                    area.tag_redraw()  # the panel's progress
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        context.workspace.status_text_set(None)
        _running.pop("run", None)
        return self._finish(context, code)

    def _finish(self, context, code: int):
        """Report how the run ended and, when it made (or had made) the music, place it."""
        if self._run.cancelled or code in core.INTERRUPTED:
            self.report({"WARNING"}, "scoretrack: cancelled; no partial output was left")
            return {"CANCELLED"}
        rows = self._run.rows()
        if code != 0 or not rows or rows[0].get("status") not in ("ok", "skipped"):
            self.report({"ERROR"}, self._run.error(code))
            return {"CANCELLED"}
        movie = _strips(context.scene.sequence_editor).get(self._movie)
        try:
            if movie is None:
                raise ValueError(f"movie strip {self._movie!r} is gone; the music is in {rows[0]['output']}")
            placed, muted = place(context.scene, movie, core.read_score(rows[0]["side"]["otio"]))
        except (ValueError, OSError, KeyError) as error:
            self.report({"ERROR"}, f"scoretrack: {error}")
            return {"CANCELLED"}
        made = "placed again (already made)" if rows[0]["status"] == "skipped" else "made and placed"
        silenced = (f"; muted the movie's own sound ({', '.join(strip.name for strip in muted)}): the mix "
                    f"replaces it") if muted else ""
        self.report({"INFO"}, f"scoretrack: {len(placed)} take(s) {made} on channels "
                              f"{placed[0].channel}-{placed[-1].channel}{silenced}")
        return {"FINISHED"}


class SCORETRACK_OT_cancel(bpy.types.Operator):
    """Stop the scoretrack run in progress; it leaves nothing half made"""

    bl_idname = "sequencer.scoretrack_cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return "run" in _running

    def execute(self, context):
        _running["run"].cancel()
        return {"FINISHED"}


class SCORETRACK_PT_panel(bpy.types.Panel):
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "scoretrack"
    bl_label = "scoretrack"

    def draw(self, context):
        layout, movie = self.layout, _active_movie(context)
        layout.label(text=movie.name if movie else "Select a movie strip", icon="SEQUENCE")
        settings = context.scene.scoretrack
        for name in ("style", "takes", "seed"):
            layout.prop(settings, name)
        if "run" in _running:
            run = _running["run"]
            if hasattr(layout, "progress"):  # Blender 4.0 and later
                layout.progress(factor=run.percent / 100, text=run.status.removeprefix("scoretrack: "))
            else:
                layout.label(text=run.status)
            layout.operator(SCORETRACK_OT_cancel.bl_idname, icon="CANCEL")
        else:
            layout.operator(SCORETRACK_OT_score.bl_idname, icon="SOUND")


CLASSES = (ScoretrackPreferences, ScoretrackSettings, SCORETRACK_OT_score, SCORETRACK_OT_cancel, SCORETRACK_PT_panel)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.scoretrack = PointerProperty(type=ScoretrackSettings)


def unregister():
    if "run" in _running:
        _running.pop("run").cancel()
    del bpy.types.Scene.scoretrack
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
