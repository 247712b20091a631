"""The pipeline: probe → read audio → melody → generate → mix → mux. Only this module knows the order.

``score(path, style=...)`` scores one clip; ``Scorer(model=...)`` keeps a loaded model for many.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import generate, media, melody
from . import mix as mixing
from .errors import BadParameterError, OutputExistsError, ScoretrackError
from .generate import GenerationOptions, MusicModel, MusicRequest
from .mix import MixOptions
from .writers import write_plot, write_sidecar, write_wav

MIX_RATE = 48000  # rate of the final soundtrack and the stems
MIX_CHANNELS = 2


@dataclass(frozen=True)
class MelodyOptions:
    """Where the melody reference comes from."""

    source: str = "video"  # video, harmonic (video's harmonic part), file, or none (text only)
    file: str | None = None  # audio file when source is "file"

    def validate(self) -> None:
        if self.source not in melody.MELODY_SOURCES:
            raise BadParameterError(f"melody source {self.source!r} must be one of {', '.join(melody.MELODY_SOURCES)}")
        if self.source == "file" and not self.file:
            raise BadParameterError("melody source 'file' needs a melody file")


@dataclass(frozen=True)
class ScoreOptions:
    """Everything that decides a clip's result; the CLI, the API and the tests all build this."""

    style: str = "cinematic orchestral score"
    melody: MelodyOptions = field(default_factory=MelodyOptions)
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    mix: MixOptions = field(default_factory=MixOptions)
    keep_original_audio: bool = False  # also write the original audio as a second, non-default track

    def validate(self) -> None:
        self.melody.validate()
        self.generation.validate()
        self.mix.validate()

    def fingerprint(self, model_name: str) -> str:
        """A short hash of every setting and the model: equal fingerprints mean an equal result."""
        text = json.dumps({"model": model_name, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class ScoreResult:
    """What scoring one clip produced."""

    input: Path
    output: Path | None
    status: str  # ok, skipped or failed
    error: str | None = None
    duration_s: float | None = None
    windows: int | None = None
    seed: int | None = None
    model: str | None = None
    loudness_lufs: float | None = None
    true_peak_dbtp: float | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    stems: Path | None = None
    plot: Path | None = None

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        for key in ("input", "output", "stems", "plot"):
            data[key] = None if data[key] is None else str(data[key])
        return data


def default_output(video_path: str | Path) -> Path:
    """``NAME.scored.EXT`` beside the input (``.mkv`` when the input's container cannot be written)."""
    path = Path(video_path)
    return path.with_name(f"{path.stem}.scored{media.default_output_extension(path)}")


def stems_path(output: Path) -> Path:
    """``NAME.scored.music.wav`` beside the output."""
    return output.with_name(f"{output.stem}.music.wav")


def sidecar_path(output: Path) -> Path:
    """JSON record of the settings an output was made with (used to resume batches)."""
    return output.with_name(f"{output.name}.scoretrack.json")


@dataclass
class _Clip:
    """A clip between stages; the audio is read only when its generation batch comes up."""

    info: media.MediaInfo
    output: Path
    options: ScoreOptions
    timings: dict[str, float]
    original: np.ndarray | None = None  # (2, n) at MIX_RATE
    melody: np.ndarray | None = None  # (1, n) at the model's rate, None for text only
    music: np.ndarray | None = None  # (channels, n) at the model's rate, once generated
    windows: int = 0


class Scorer:
    """Holds a loaded model and scores clips with it.

    Parameters
    ----------
    model : str
        Hub id (default ``facebook/musicgen-melody``) or a local folder written by ``save_pretrained``.
    device, dtype : str
        ``auto`` picks cuda, mps, then cpu, and float32 on CPU, bfloat16/float16 on GPU.
    """

    def __init__(self, model: str = generate.DEFAULT_MODEL, *, device: str = "auto", dtype: str = "auto"):
        self.music_model: MusicModel = generate.load_model(model, device=device, dtype=dtype)

    @property
    def model_name(self) -> str:
        return self.music_model.name

    def score(self, path: str | Path, *, output: str | Path | None = None, options: ScoreOptions = ScoreOptions(),
              overwrite: bool = False, stems: bool = False, plot: bool = False,
              on_step: Callable[[int], None] | None = None) -> ScoreResult:
        """Score one clip.

        Returns a ``skipped`` result when ``output`` exists and was made with the same settings.

        Raises
        ------
        ScoretrackError
            Its subclasses name the problem: bad settings, unreadable input, existing output.
        """
        output = Path(output) if output is not None else default_output(path)
        if not overwrite and self._is_done(output, options):
            return ScoreResult(input=Path(path), output=output, status="skipped", model=self.model_name)
        clip = self._check(path, output, options, overwrite)
        self._read(clip)
        self._generate([clip], on_step)
        return self._finish(clip, overwrite=overwrite, stems=stems, plot=plot)

    def score_many(self, jobs: Sequence[tuple[str | Path, str | Path | None, ScoreOptions]], *, overwrite: bool = False,
                   stems: bool = False, plot: bool = False, on_step: Callable[[int], None] | None = None,
                   on_clip: Callable[[ScoreResult], None] | None = None,
                   on_total: Callable[[int], None] | None = None) -> list[ScoreResult]:
        """Score many clips, batching their generation; a bad clip is reported, the rest finish.

        Each job is ``(path, output or None, options)``. A clip whose output exists and was made with
        the same settings (its sidecar says so) is skipped unless ``overwrite``. Every input is
        checked first (cheap); audio is read one generation batch at a time, so memory follows the
        batch, not the job list. ``on_total`` is told the number of decode steps ahead once the
        inputs are checked; ``on_step`` is called after each.
        """
        results: list[ScoreResult | None] = [None] * len(jobs)

        def report(i: int, result: ScoreResult) -> None:
            results[i] = result
            if on_clip is not None:
                on_clip(result)

        checked: list[tuple[int, _Clip]] = []
        for i, (path, output, options) in enumerate(jobs):
            output = Path(output) if output is not None else default_output(path)
            try:
                if not overwrite and self._is_done(output, options):
                    report(i, ScoreResult(input=Path(path), output=output, status="skipped", model=self.model_name))
                else:
                    checked.append((i, self._check(path, output, options, overwrite)))
            except ScoretrackError as error:
                report(i, ScoreResult(input=Path(path), output=None, status="failed", error=str(error)))
        groups = _same_generation(checked)
        if on_total is not None:
            on_total(sum(generate.total_steps(self.music_model, self._requests([c for _, c in g]), g[0][1].options.generation)
                         for g in groups))
        for group in groups:
            size = group[0][1].options.generation.batch_size
            for batch in (group[s : s + size] for s in range(0, len(group), size)):
                ready = []
                for i, clip in batch:
                    try:
                        self._read(clip)
                        ready.append((i, clip))
                    except ScoretrackError as error:
                        report(i, self._failure(clip, error))
                if ready:
                    self._generate([clip for _, clip in ready], on_step)
                for i, clip in ready:
                    try:
                        report(i, self._finish(clip, overwrite=overwrite, stems=stems, plot=plot))
                    except ScoretrackError as error:
                        report(i, self._failure(clip, error))
                    clip.original = clip.melody = clip.music = None  # free the audio before the next batch
        return results

    def _failure(self, clip: _Clip, error: ScoretrackError) -> ScoreResult:
        return ScoreResult(input=clip.info.path, output=None, status="failed", error=str(error),
                           duration_s=clip.info.duration_s, model=self.model_name, timings=clip.timings)

    def _is_done(self, output: Path, options: ScoreOptions) -> bool:
        sidecar = sidecar_path(output)
        if not (output.exists() and sidecar.exists()):
            return False
        try:
            return json.loads(sidecar.read_text()).get("fingerprint") == options.fingerprint(self.model_name)
        except (OSError, ValueError):
            return False

    def _check(self, path, output: Path, options: ScoreOptions, overwrite: bool) -> _Clip:
        """Check settings, input and output before any heavy work."""
        options.validate()
        start = time.perf_counter()
        info = media.probe(path)
        media.output_format(output)
        if output.exists() and not overwrite:
            raise OutputExistsError(f"{output}: already exists (use --force to replace it)")
        return _Clip(info, output, options, timings={"probe": time.perf_counter() - start})

    def _read(self, clip: _Clip) -> None:
        """Read the original audio and the melody reference onto the clip's timeline."""
        start = time.perf_counter()
        clip.original = media.read_audio(clip.info.path, sample_rate=MIX_RATE, channels=MIX_CHANNELS,
                                         duration_s=clip.info.duration_s)
        clip.timings["read_audio"] = time.perf_counter() - start
        start = time.perf_counter()
        clip.melody = self._melody_reference(clip.info, clip.options.melody, clip.original)
        clip.timings["melody"] = time.perf_counter() - start

    def _melody_reference(self, info: media.MediaInfo, opts: MelodyOptions, original: np.ndarray) -> np.ndarray | None:
        """Mono 32 kHz melody reference on the clip's timeline, or None for text-only."""
        rate = self.music_model.sample_rate
        samples = media.sample_count(info.duration_s, rate)
        if opts.source == "none":
            return None
        if opts.source == "file":
            return media.read_audio(opts.file, sample_rate=rate, duration_s=info.duration_s)
        if not info.has_audio:
            warnings.warn(f"{info.path}: no audio stream, generating from the text style alone", stacklevel=2)
            return None
        mono = mixing.resample(original.mean(axis=0, keepdims=True), sample_rate=MIX_RATE, target_rate=rate, samples=samples)
        return melody.harmonic(mono, sample_rate=rate) if opts.source == "harmonic" else mono

    @staticmethod
    def _requests(clips: list[_Clip]) -> list[MusicRequest]:
        return [MusicRequest(style=c.options.style, duration_s=c.info.duration_s, melody_audio=c.melody,
                             seed=c.options.generation.seed) for c in clips]

    def _generate(self, clips: list[_Clip], on_step) -> None:
        start = time.perf_counter()
        traces: list[generate.GenerationTrace] = []
        music = generate.generate_music(self.music_model, self._requests(clips), clips[0].options.generation,
                                        on_step=on_step, traces=traces)
        share = (time.perf_counter() - start) / len(clips)
        for clip, audio, trace in zip(clips, music, traces):
            clip.timings["generate"] = share
            clip.music, clip.windows = audio, len(trace.windows)

    def _finish(self, clip: _Clip, *, overwrite: bool, stems: bool, plot: bool) -> ScoreResult:
        """Mix, write the outputs, and report."""
        start = time.perf_counter()
        samples = media.sample_count(clip.info.duration_s, MIX_RATE)
        music = mixing.resample(clip.music, sample_rate=self.music_model.sample_rate, target_rate=MIX_RATE, samples=samples)
        music = np.repeat(music, MIX_CHANNELS, axis=0) if music.shape[0] == 1 else music
        mixed = mixing.mix(music, clip.original if clip.info.has_audio else None, sample_rate=MIX_RATE,
                           options=clip.options.mix)
        clip.timings["mix"] = time.perf_counter() - start
        start = time.perf_counter()
        media.mux(clip.info.path, mixed.audio, sample_rate=MIX_RATE, output=clip.output, overwrite=overwrite,
                  original_audio=clip.original if clip.options.keep_original_audio and clip.info.has_audio else None,
                  info=clip.info)
        write_sidecar(sidecar_path(clip.output), clip.options.fingerprint(self.model_name), clip.options)
        result = ScoreResult(input=clip.info.path, output=clip.output, status="ok", duration_s=clip.info.duration_s,
                             windows=clip.windows, seed=clip.options.generation.seed, model=self.model_name,
                             loudness_lufs=mixed.loudness_lufs, true_peak_dbtp=mixed.true_peak_dbtp, timings=clip.timings)
        if stems:
            result.stems = write_wav(stems_path(clip.output), mixed.music, sample_rate=MIX_RATE, overwrite=True)
        if plot:
            result.plot = write_plot(clip.output.with_suffix(".png"), clip.original, mixed, sample_rate=MIX_RATE,
                                     seams_s=self._seams(clip))
        clip.timings["mux"] = time.perf_counter() - start
        return result

    def _seams(self, clip: _Clip) -> list[float]:
        opts = clip.options.generation
        plan = generate.plan_windows(clip.info.duration_s, window_s=opts.window_s, stride_s=opts.stride_s,
                                     frame_rate=self.music_model.frame_rate, sample_rate=self.music_model.sample_rate)
        return [w.start / self.music_model.frame_rate for w in plan[1:]]


def _same_generation(clips: list[tuple[int, _Clip]]) -> list[list[tuple[int, _Clip]]]:
    """Group clips that can share generate() calls (equal generation settings)."""
    groups: dict[GenerationOptions, list[tuple[int, _Clip]]] = {}
    for item in clips:
        groups.setdefault(item[1].options.generation, []).append(item)
    return list(groups.values())


def score(path: str | Path, *, style: str = ScoreOptions.style, output: str | Path | None = None,
          model: str = generate.DEFAULT_MODEL, device: str = "auto", overwrite: bool = False,
          stems: bool = False, plot: bool = False, options: ScoreOptions | None = None) -> ScoreResult:
    """Score one video: generate music of its exact length in ``style`` and mux it in.

    Loads the model for this call; use :class:`Scorer` to score many clips with one load.

    Parameters
    ----------
    path : str or Path
        The video.
    style : str
        Text description of the music.
    output : str or Path, optional
        Destination; default ``NAME.scored.EXT`` beside the input.
    model : str
        Hub id or local folder.
    options : ScoreOptions, optional
        Full settings; ``style`` replaces its style.

    Returns
    -------
    ScoreResult

    Raises
    ------
    ScoretrackError
        Bad settings, unreadable input, existing output, or no model.
    """
    options = dataclasses.replace(options or ScoreOptions(), style=style)
    options.validate()
    media.probe(path)  # fail on bad input before the (slow) model load
    return Scorer(model, device=device).score(path, output=output, options=options, overwrite=overwrite,
                                              stems=stems, plot=plot)
