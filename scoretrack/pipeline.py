"""The pipeline: plan → read audio → soundtrack (melody, generate, mix) → write. Only this module knows the order.

:meth:`Scorer.soundtrack` is the one function that turns audio (arrays) into a soundtrack; the file
pipeline (:meth:`Scorer.score`, :func:`score_many`, the CLI), the moviepy adapter and both executors
call it. ``score(path, style=...)`` scores one file; ``Scorer(model=...)`` keeps a loaded model for many.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from . import generate, media, melody, pick, review, scenes, writers
from . import mix as mixing
from .errors import BadParameterError
from .claims import Claims
from .executors import LocalExecutor, batches
from .generate import MusicRequest
from .model import DEFAULT_MODEL, MusicModel, load_model, settings_name
from .options import SAMPLER, ScoreOptions, take_seed
from .plan import (ClipRequest, Job, SideOutputs, known_family, loudness_notes, pending_record, plan_jobs,
                   planned_options, read_sidecar, sidecar_path, sidecar_record, take_figures)
from .results import ScoreResult, TakeResult

MIX_RATE = 48000  # rate of the final soundtrack and the stems


@dataclass
class Soundtrack:
    """A clip's soundtrack and what shaped it, at ``sample_rate`` (48 kHz), arrays ``(channels, samples)``.

    ``mix`` is the final audio (per the mix mode), ``music`` the level-set, faded music before ducking,
    ``ducked`` the music times ``gain`` (the per-sample ducking envelope): the original (in ``mix`` mode)
    plus ``ducked``, times ``loudness_gain_db`` (and the peak limiter's brief dips), is ``mix``; ``speech``
    the detected speech regions and ``seams`` the centres of the window crossfades, both in seconds.
    """

    mixed: mixing.MixResult
    seams: list[float]
    windows: int
    styles: list[str]  # the style text of each window
    cuts: list[float] = field(default_factory=list)
    sample_rate: int = MIX_RATE
    timings: dict[str, float] = field(default_factory=dict)  # seconds: generate (its share of the batch), mix
    take: int = 1  # which take of the clip (ScoreOptions.take_numbers)
    seed: int | None = None  # the take's generation seed (options.take_seed)

    mix = property(lambda self: self.mixed.audio)
    envelope = property(lambda self: self.mixed.envelope)  # the gain every 10 ms
    music = property(lambda self: self.mixed.music)
    ducked = property(lambda self: self.mixed.ducked)
    gain = property(lambda self: self.mixed.gain)
    speech = property(lambda self: self.mixed.speech)
    loudness_lufs = property(lambda self: self.mixed.loudness_lufs)
    loudness_gain_db = property(lambda self: self.mixed.loudness_gain_db)
    true_peak_dbtp = property(lambda self: self.mixed.true_peak_dbtp)
    channel_names = property(lambda self: self.mixed.channel_names)

    def blocks(self, block_samples: int = mixing.BLOCK_SAMPLES) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(mix, music, ducked)`` blocks in order, for writers that stream long clips."""
        return self.mixed.blocks(block_samples)


@dataclass
class ClipAudio:
    """One clip's sound on its timeline, ready for :meth:`Scorer.soundtrack`'s batch path."""

    original: np.ndarray | None  # (channels, samples) at MIX_RATE, or None for picture without sound
    duration_s: float
    options: ScoreOptions
    channel_names: tuple[str, ...] | None = None
    cuts_s: tuple[float, ...] = ()
    melody_file: np.ndarray | None = None  # mono 32 kHz reference read from options.melody.file
    takes: tuple[int, ...] | None = None  # the take numbers to make; None: options.take_numbers

    @property
    def take_numbers(self) -> tuple[int, ...]:
        return self.takes if self.takes is not None else self.options.take_numbers


def with_style(options: ScoreOptions | None, style: str | None) -> ScoreOptions:
    """``options`` (default settings when None) with ``style`` replacing its style when given."""
    options = options or ScoreOptions()
    return options if style is None else dataclasses.replace(options, style=style)


class Scorer:
    """Holds a loaded model and scores clips with it.

    Parameters
    ----------
    model : str
        Hub id (default ``facebook/musicgen-melody``) or a local folder written by ``save_pretrained``.
    device, dtype : str
        ``auto`` picks cuda, mps, then cpu, and float32 on CPU, bfloat16/float16 on GPU.
    quantize : {None, "int8"}
        int8 decoder weights on CPU (see :func:`scoretrack.model.load_model`).
    on_status : callable, optional
        Told one line before slow steps (the model load).
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "auto",
                 quantize: str | None = None, on_status: Callable[[str], None] | None = None):
        self.music_model: MusicModel = load_model(model, device=device, dtype=dtype, quantize=quantize,
                                                  on_status=on_status)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    @property
    def model_name(self) -> str:
        return self.music_model.name

    def soundtrack(self, audio: np.ndarray | None, sample_rate: int, *, duration_s: float | None = None,
                   options: ScoreOptions | None = None, style: str | None = None,
                   channel_names: Sequence[str] | None = None, cuts_s: Sequence[float] = (),
                   on_step: Callable[[int], None] | None = None) -> Soundtrack:
        """Turn a clip's original audio into its soundtrack: melody, generation, ducking, loudness.

        Parameters
        ----------
        audio : np.ndarray or None
            ``(channels, samples)``, ``(samples, channels)`` (as soundfile and moviepy give it; up to 8
            channels either way) or ``(samples,)`` at ``sample_rate``: the clip's own sound, the
            melody reference and the speech the music ducks under. Floats are taken as they are
            (full scale 1.0); integer PCM by its type's full scale (int16, int32, uint8: see
            :func:`pcm_to_float`). None for picture without sound (give ``duration_s``).
        sample_rate : int
            Rate of ``audio`` in Hz, 1000 to 768000; numpy integers and integral floats (16000.0) too.
        duration_s : float, optional
            The clip's length, > 0 (any real number type); default the audio's. Longer audio is cut,
            shorter is padded.
        options : ScoreOptions, optional
            Every setting; ``style`` replaces its style when given.
        channel_names : sequence of str, optional
            ffmpeg channel names of ``audio`` (``FL FR FC LFE SL SR``); default mono/stereo by count.
        cuts_s : sequence of float
            Picture cuts (seconds), used when ``options.follow_cuts``.

        Returns
        -------
        Soundtrack
            At 48 kHz, exactly ``round(duration_s * 48000)`` samples.
        """
        return self.soundtrack_takes(audio, sample_rate, duration_s=duration_s, options=options, style=style,
                                     channel_names=channel_names, cuts_s=cuts_s, on_step=on_step,
                                     takes=1)[0]

    def soundtrack_takes(self, audio: np.ndarray | None, sample_rate: int, *, duration_s: float | None = None,
                         options: ScoreOptions | None = None, style: str | None = None,
                         channel_names: Sequence[str] | None = None, cuts_s: Sequence[float] = (),
                         on_step: Callable[[int], None] | None = None, takes: int | None = None) -> list[Soundtrack]:
        """:meth:`soundtrack` for every take of ``options.take_numbers`` (or the first ``takes`` of them),
        generated as rows of the same generate() calls and ducked under one speech detection.

        Returns
        -------
        list of Soundtrack
            One per take, in take order; ``Soundtrack.take`` and ``seed`` say which.

        Raises
        ------
        DeviceMemoryError
            The clip does not fit the device even alone.
        """
        options = with_style(options, style)
        clip = clip_audio(audio, sample_rate, duration_s=duration_s, options=options, channel_names=channel_names,
                          cuts_s=cuts_s)
        clip = dataclasses.replace(clip, takes=options.take_numbers[:takes])
        [tracks] = self.soundtracks([clip], on_step=on_step)
        if isinstance(tracks, BaseException):
            raise tracks
        return tracks

    def soundtracks(self, clips: Sequence[ClipAudio], *,
                    on_step: Callable[[int], None] | None = None) -> list[list[Soundtrack] | BaseException]:
        """The takes of several clips with equal generation settings, generated in shared batches.

        Returns, per clip, its Soundtracks in take order, or the error that failed it alone (a
        :class:`~scoretrack.errors.DeviceMemoryError` when it does not fit the device even alone)."""
        mm = self.music_model
        start = time.perf_counter()
        rows = [(clip, number) for clip in clips for number in clip.take_numbers]  # as generate_music returns them
        # plans hold each window's melody chroma (one for all takes), not the melody audio (0.46 GB an
        # hour), which goes here
        plans = generate.plan_music(mm, [self._request(clip) for clip in clips], clips[0].options.generation)
        traces: list[generate.GenerationTrace] = []
        # the music waits for mixing in temporary files, not memory (0.46 GB an hour)
        music = generate.generate_music(mm, plans, clips[0].options.generation, on_step=on_step, traces=traces,
                                        on_disk=True)
        share = (time.perf_counter() - start) / len(rows)
        tracks: dict[int, list[Soundtrack] | BaseException] = {id(clip): [] for clip in clips}
        speech: dict[int, np.ndarray | None] = {}
        for (clip, number), audio, trace in zip(rows, music, traces):
            if isinstance(tracks[id(clip)], BaseException):  # an earlier take of the clip failed it
                continue
            if isinstance(audio, BaseException):
                tracks[id(clip)] = audio
                continue
            start = time.perf_counter()
            if id(clip) not in speech:  # every take ducks under the one detection
                speech[id(clip)] = _speech_flags(clip)
            mixed = mixing.mix(audio, clip.original, music_rate=mm.sample_rate, sample_rate=MIX_RATE,
                               options=clip.options.mix, channel_names=clip.channel_names,
                               samples=media.sample_count(clip.duration_s, MIX_RATE), speech_flags=speech[id(clip)])
            tracks[id(clip)].append(Soundtrack(
                mixed=mixed, seams=generate.seam_times(trace.windows, frame_rate=mm.frame_rate),
                windows=len(trace.windows), styles=list(trace.styles), cuts=list(clip.cuts_s),
                timings={"generate": share, "mix": time.perf_counter() - start}, take=number,
                seed=take_seed(clip.options.generation.seed, number)))
        return [tracks[id(clip)] for clip in clips]

    def _request(self, clip: ClipAudio) -> MusicRequest:
        """The generation request of a clip: its style changes, seams, melody reference and takes' seeds."""
        return dataclasses.replace(
            self._plain_request(clip.duration_s, clip.options, clip.cuts_s), melody_audio=self._melody(clip),
            take_seeds=tuple(take_seed(clip.options.generation.seed, n) for n in clip.take_numbers))

    def _plain_request(self, duration_s: float, options: ScoreOptions, cuts_s: Sequence[float] = ()) -> MusicRequest:
        """A clip's request without its melody and seeds: what its windows and decode steps depend on."""
        seams, prompt_s = scenes.seam_plan(duration_s, options, cuts_s, frame_rate=self.music_model.frame_rate)
        return MusicRequest(style=options.style, duration_s=duration_s, styles=tuple(options.styles_at),
                            seams_s=seams, prompt_s=prompt_s)

    def total_steps(self, jobs: Sequence[Job]) -> int:
        """Decode steps that scoring ``jobs`` takes, batched as the executors batch them (for progress bars;
        seams that will move onto cuts not found yet are counted where they would be without cuts)."""
        mm = self.music_model
        total = 0
        for batch in batches(jobs):
            # takes are rows of their clip's calls: they add no steps
            requests = [self._plain_request(job.info.duration_s, job.options) for job in batch
                        if any(take.needs_music for take in job.takes)]
            total += generate.total_steps(mm, requests, batch[0].options.generation) if requests else 0
        return total

    def _melody(self, clip: ClipAudio) -> np.ndarray | mixing.MonoDownmix | None:
        """Mono 32 kHz melody reference on the clip's timeline, or None for text only."""
        rate = self.music_model.sample_rate
        source = clip.options.melody.resolved(self.music_model.takes_melody).source
        if source == "none":
            return None
        if source == "file":
            return clip.melody_file
        if clip.original is None or not np.any(clip.original):
            return None
        if source == "harmonic":
            return melody.harmonic(mixing.downmix(clip.original, sample_rate=MIX_RATE, target_rate=rate,
                                                  channel_names=clip.channel_names), sample_rate=rate)
        # read window by window while planning: an hour's mono copy would be 0.46 GB
        return mixing.MonoDownmix(clip.original, sample_rate=MIX_RATE, target_rate=rate, channel_names=clip.channel_names)

    # -- files ---------------------------------------------------------------------------------------

    def score(self, path: str | Path, *, output: str | Path | None = None, options: ScoreOptions | None = None,
              style: str | None = None, overwrite: bool = False, stems: bool = False, plot: bool = False,
              timelines: Sequence[str] = (), on_step: Callable[[int], None] | None = None) -> ScoreResult:
        """Score one file (video or audio) into ``output`` (default ``NAME.scored.EXT`` beside it).

        Returns a ``skipped`` result when the output and every side file asked for exist and are this
        input's, made with these settings.

        Raises
        ------
        ScoretrackError
            Its subclasses name the problem: bad settings, unreadable input, existing output.
        """
        request = ClipRequest(Path(path), None if output is None else Path(output), with_style(options, style))
        side = SideOutputs(stems=stems, plot=plot, timelines=tuple(timelines))
        [result] = self.score_many([request], overwrite=overwrite, side=side, on_step=on_step)
        if result.status == "failed":
            raise result.exception
        return result

    def score_many(self, requests: Sequence[ClipRequest | tuple], *, overwrite: bool = False,
                   side: SideOutputs = SideOutputs(), on_step: Callable[[int], None] | None = None,
                   on_clip: Callable[[ScoreResult], None] | None = None,
                   on_total: Callable[[int], None] | None = None) -> list[ScoreResult]:
        """Score many files with this model, batching their generation; a bad clip fails alone.

        Each request is a :class:`ClipRequest` or a ``(path, output or None, options)`` tuple.
        """
        return score_many(requests, model=self.model_name, executor=LocalExecutor(self), overwrite=overwrite,
                          side=side, on_step=on_step, on_clip=on_clip, on_total=on_total)

    def run_batch(self, jobs: Sequence[Job], *, on_step: Callable[[int], None] | None = None,
                  on_stopped: Callable[[ScoreResult], None] | None = None) -> list[ScoreResult]:
        """Score planned jobs that share generation settings; every clip's error stays its own.

        A clip that cannot be read fails alone; if a shared generate() call fails, each clip is retried
        alone so that the failing one is named. A stop while a clip's takes are written tells
        ``on_stopped`` which of them are complete (an ``interrupted`` result) before it goes on.
        """
        results: dict[int, ScoreResult] = {}
        ready: list[tuple[Job, ClipAudio]] = []
        for job in jobs:
            start = time.perf_counter()
            try:
                ready.append((job, self._read(job)))
            except Exception as error:
                results[job.index] = self._failure(job, error)
            job.timings["read_audio"] = time.perf_counter() - start
        scored = [(job, clip) for job, clip in ready if clip.take_numbers]
        tracks: dict[int, list[Soundtrack] | BaseException] = {}
        if scored:
            try:
                made = self.soundtracks([clip for _, clip in scored], on_step=on_step)
            except Exception:
                made = [self._alone(clip, on_step) for _, clip in scored]
            tracks = {job.index: takes for (job, _), takes in zip(scored, made)}
        for job, clip in ready:
            try:
                takes = tracks.get(job.index, [])
                if isinstance(takes, BaseException):
                    raise takes
                results[job.index] = self._write(job, clip, takes, {**job.timings, **(takes[0].timings if takes else {})},
                                                 on_stopped)
            except Exception as error:
                results[job.index] = self._failure(job, error)
        return [results[job.index] for job in jobs]

    def _alone(self, clip: ClipAudio, on_step) -> list[Soundtrack] | BaseException:
        try:
            return self.soundtracks([clip], on_step=on_step)[0]
        except Exception as error:
            return error

    def _failure(self, job: Job, error: BaseException) -> ScoreResult:
        return ScoreResult.failure(job.index, job.path, error, duration_s=job.info.duration_s, model=self.model_name,
                                   worker=self.worker, timings=dict(job.timings))

    def _read(self, job: Job) -> ClipAudio:
        """Read the job's original audio (and melody file) onto its timeline; find cuts when asked."""
        info, options = job.info, job.options
        keep = options.mix.output_layout == "keep"
        original, names = None, None
        if info.has_audio:
            original = media.read_audio(info.path, sample_rate=MIX_RATE, channels=None if keep else 2,
                                        duration_s=info.duration_s, start_s=info.start_s)
            names = info.audio[0].channel_names if keep else ("FL", "FR")
        elif info.is_video:
            warnings.warn(f"{info.path}: no audio stream, generating from the text style alone", stacklevel=2)
        melody_file = None
        if options.melody.source == "file":
            melody_file = media.read_audio(options.melody.file, sample_rate=self.music_model.sample_rate,
                                           channels=1, duration_s=info.duration_s)
        cuts = tuple(scenes.detect_cuts(info.path, info=info)) if options.follow_cuts and info.is_video else ()
        return ClipAudio(original=original, duration_s=info.duration_s, options=options, channel_names=names,
                         cuts_s=cuts, melody_file=melody_file,
                         takes=tuple(take.number for take in job.takes if take.needs_music))

    def _write(self, job: Job, clip: ClipAudio, tracks: list[Soundtrack], timings: dict[str, float],
               on_stopped: Callable[[ScoreResult], None] | None = None) -> ScoreResult:
        """Write each take's side files, then its output, then the sidecar that records them all.

        A stop (Ctrl-C, a signal) while writing tells ``on_stopped`` the clip's ``interrupted`` result,
        which says the takes complete by then, before it goes on."""
        start = time.perf_counter()
        made_now = {track.take: track for track in tracks}
        for take in job.to_generate():  # each lossy output measured as delivered (and its mix fitted to it)
            if "output" in take.make and take.number in made_now:
                made_now[take.number] = writers.deliverable(job, made_now[take.number], sample_rate=MIX_RATE)
        timings["deliver"] = time.perf_counter() - start
        # a timeline remade alone (another take added since) needs no music: its keys come from the plan
        basis = tracks[0] if tracks else self._timeline_basis(clip)
        complete: list[int] = []
        holder = job.timeline_takes()[0]
        try:  # one take holds the timelines, which read every take's dry stem: it is written last
            for take in sorted(job.to_generate(), key=lambda take: take is holder):
                self._write_take(job, take, made_now, clip.original, basis)
                complete.append(take.number)
        except BaseException as stop:
            if on_stopped is not None and not isinstance(stop, Exception):
                on_stopped(self._result(job, basis, timings, complete=complete))
            raise
        timings["write"] = time.perf_counter() - start  # rendering the mix block by block, encoding, muxing
        return self._result(job, basis, timings)

    def _write_take(self, job: Job, take, made_now: dict[int, Soundtrack], original: np.ndarray | None, basis) -> None:
        """One take's side files, output and sidecar; nothing of the take is left half made if it fails or stops."""
        earlier, sidecar = read_sidecar(take.output), sidecar_path(take.output)
        # until the last file is in place: a rerun after a kill makes the take again
        writers.write_sidecar(sidecar, pending_record(take))
        made: dict[str, Path] = {}
        try:
            made = writers.write_side_files(job, take, made_now, original, sample_rate=MIX_RATE, timeline=basis)
            if "output" in take.make:
                writers.write_output(job, take, made_now[take.number], sample_rate=MIX_RATE)
        except BaseException:  # a failure or a stop: nothing of the take is left half made
            for path in made.values():
                path.unlink(missing_ok=True)
            if earlier is None:
                sidecar.unlink(missing_ok=True)
            else:
                writers.write_sidecar(sidecar, earlier)
            raise
        track = made_now.get(take.number)
        figures = None if track is None else {"loudness_lufs": float(track.loudness_lufs),
                                              "true_peak_dbtp": float(track.true_peak_dbtp),
                                              "loudness_gain_db": float(track.loudness_gain_db)}
        facts = review.sidecar_facts(job, track, earlier, model_name=self.model_name)
        # the draw that made the take's music (kept from the earlier record when only side files were remade)
        sampler = SAMPLER if track is not None else (earlier or {}).get("sampler")
        writers.write_sidecar(sidecar, {**sidecar_record(job, take, made, earlier, figures), **facts,
                                        "sampler": sampler})

    def _result(self, job: Job, basis, timings: dict[str, float], complete: Sequence[int] | None = None) -> ScoreResult:
        """The clip's result: each take's own output, status and figures (from its sidecar), the clip's figures
        its first take's. With ``complete`` (the takes written before a stop), the clip is ``interrupted``."""
        takes = []
        for take in job.takes:
            if "output" not in take.make:
                status = "skipped"
            else:
                status = "ok" if complete is None or take.number in complete else "not started"
            figures = take_figures(read_sidecar(take.output)) if status != "not started" else {}
            takes.append(TakeResult(number=take.number, seed=take.seed, output=take.output, side=dict(take.side),
                                    status=status, **figures))
        styles = getattr(basis, "styles", [])
        return ScoreResult(input=job.path, output=job.output, status="ok" if complete is None else "interrupted",
                           index=job.index, duration_s=job.info.duration_s, windows=len(basis.seams) + 1,
                           seed=job.takes[0].seed, model=self.model_name,
                           melody=melody_used(job, self.music_model.takes_melody),
                           loudness_lufs=takes[0].loudness_lufs, true_peak_dbtp=takes[0].true_peak_dbtp,
                           loudness_gain_db=takes[0].loudness_gain_db,
                           seams_s=list(basis.seams), cuts_s=list(basis.cuts), styles=list(styles),
                           side=dict(job.takes[0].side), timings=timings, worker=self.worker,
                           notes=[*job.notes, *loudness_notes(job.options.mix, takes)], takes=takes)

    def _timeline_basis(self, clip: ClipAudio) -> writers.TimelineBasis:
        """A clip's seams, cuts and ducking envelope as its scoring would give them, without generating."""
        mm = self.music_model
        windows = generate.request_windows(mm, self._plain_request(clip.duration_s, clip.options, clip.cuts_s),
                                           clip.options.generation)
        flags = _speech_flags(clip)
        envelope = mixing.music_envelope(np.zeros(0, bool) if flags is None else flags,
                                         samples=media.sample_count(clip.duration_s, MIX_RATE), sample_rate=MIX_RATE,
                                         options=clip.options.mix)
        return writers.TimelineBasis(seams=tuple(generate.seam_times(windows, frame_rate=mm.frame_rate)),
                                     cuts=tuple(clip.cuts_s), envelope=envelope)


def melody_used(job: Job, takes_melody: bool) -> str:
    """The melody reference a clip's music followed: its options' source, or none for a clip without sound
    when that source is its sound (video or harmonic)."""
    source = job.options.melody.resolved(takes_melody).source
    return "none" if source in ("video", "harmonic") and not job.info.has_audio else source


def _speech_flags(clip: ClipAudio) -> np.ndarray | None:
    """:func:`mix.detect_speech` of the clip's sound, as :func:`mix.mix` would detect it; None without sound."""
    if clip.original is None or not np.any(clip.original):
        return None
    return mixing.detect_speech(clip.original, sample_rate=MIX_RATE, threshold=clip.options.mix.vad_threshold,
                                channel_names=mixing.layout_names(clip.original.shape[0], clip.channel_names))


def pcm_to_float(audio) -> np.ndarray:
    """Samples as float32 in [-1, 1]: integer PCM is scaled by its type's full scale (int16 by 2**15,
    int32 by 2**31, uint8 centred on 128), floats are taken as they are.

    Raises
    ------
    BadParameterError
        Samples that are neither integers nor floats (booleans, complex numbers, text).
    """
    audio = np.asarray(audio)
    if audio.dtype.kind not in "iuf":
        raise BadParameterError(f"audio dtype {audio.dtype} must be float or integer PCM (int16, int32, uint8)")
    floats = audio.astype(np.float32, copy=False)  # float32 input is not copied (an hour is 1.3 GB)
    if audio.dtype.kind in "iu":
        full_scale = (int(np.iinfo(audio.dtype).max) + 1) / (2 if audio.dtype.kind == "u" else 1)
        if audio.dtype.kind == "u":
            floats -= np.float32(full_scale)  # unsigned PCM is centred on half its range
        floats *= np.float32(1 / full_scale)
    return floats


def _real(value) -> bool:
    """A finite real number: Python's, numpy's (np.int64, np.float32...), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)


def clip_audio(audio: np.ndarray | None, sample_rate: int, *, duration_s: float | None, options: ScoreOptions,
               channel_names: Sequence[str] | None = None, cuts_s: Sequence[float] = ()) -> ClipAudio:
    """Check array input and bring it to 48 kHz on a timeline of exactly ``duration_s``."""
    if audio is None:
        if duration_s is None:
            raise BadParameterError("audio=None needs duration_s (the clip's length in seconds)")
    else:
        audio = pcm_to_float(audio)
        if audio.ndim == 1:
            audio = audio[None]
        elif audio.ndim == 2 and audio.shape[0] > 8 >= audio.shape[1]:
            audio = audio.T  # (samples, channels), as soundfile, scipy.io.wavfile and moviepy give it
        if audio.ndim != 2 or not 1 <= audio.shape[0] <= 8 or audio.shape[1] == 0:
            raise BadParameterError(f"audio shape {audio.shape} must be (channels 1..8, samples > 0)")
        if not np.all(np.isfinite(audio)):
            raise BadParameterError("audio holds NaN or infinite samples")
        if not (_real(sample_rate) and sample_rate == int(sample_rate) and 1000 <= sample_rate <= 768000):
            raise BadParameterError(f"sample_rate={sample_rate!r} must be an integer number of Hz in [1000, 768000]")
        sample_rate = int(sample_rate)
        duration_s = audio.shape[1] / sample_rate if duration_s is None else duration_s
    if not _real(duration_s) or duration_s <= 0:
        raise BadParameterError(f"duration_s={duration_s!r} must be a positive number of seconds")
    if audio is not None:
        audio = mixing.resample(audio, sample_rate=sample_rate, target_rate=MIX_RATE,
                                samples=media.sample_count(duration_s, MIX_RATE))
    if channel_names is not None and (audio is None or len(channel_names) != audio.shape[0]):
        raise BadParameterError(f"channel_names={tuple(channel_names)} must name each of the audio's channels")
    return ClipAudio(original=audio, duration_s=float(duration_s), options=options,
                     channel_names=None if channel_names is None else tuple(channel_names), cuts_s=tuple(cuts_s))


def request_folders(requests: Sequence[ClipRequest]) -> set[Path]:
    """The folders the requests' outputs go to (as the plan names them)."""
    return {Path(r.output).parent if r.output is not None else Path(r.out_dir or Path(r.path).parent) for r in requests}


def score_many(requests: Sequence[ClipRequest | tuple], *, model: str = DEFAULT_MODEL,
               executor=None, overwrite: bool = False, side: SideOutputs = SideOutputs(),
               on_step: Callable[[int], None] | None = None, on_clip: Callable[[ScoreResult], None] | None = None,
               on_total: Callable[[int], None] | None = None, wait: bool = False,
               on_wait: Callable[[str], None] | None = None) -> list[ScoreResult]:
    """Plan every clip, claim its files, then score the ones left to do on ``executor``; results in input order.

    A clip whose output or side files another run is writing fails (``OutputBusyError``), or, with
    ``wait``, waits for that run (``on_wait`` is told one line) and is then decided again: skipped
    when the other run made it as asked, failed when it made it otherwise.

    ``executor`` runs the jobs (default: this process, loading ``model`` only if a clip needs it;
    :class:`scoretrack.ray_executor.RayExecutor` for a cluster). ``on_total`` is told the number of
    decode steps ahead once the plan is made; ``on_step`` is called after each; ``on_clip`` with
    each result as it arrives.
    """
    requests = [r if isinstance(r, ClipRequest) else ClipRequest(Path(r[0]), None if r[1] is None else Path(r[1]), r[2])
                for r in requests]
    model = settings_name(model)
    planned_at = time.perf_counter()
    pick.recover(request_folders(requests))  # a pick killed in the middle is finished before the plan reads the files
    jobs, settled = plan_jobs(requests, model_name=model, side=side, overwrite=overwrite)
    results: list[ScoreResult | None] = [None] * len(requests)
    with Claims() as claims:
        def report(result: ScoreResult) -> None:
            claims.release(result.index)
            if result.queued_s is None and result.status != "skipped":
                result.queued_s = max(0.0, time.perf_counter() - planned_at - sum(result.timings.values()))
            results[result.index] = result
            if on_clip is not None:
                on_clip(result)

        family = known_family(model)
        options = {i: planned_options(r.options, family) for i, r in enumerate(requests)}
        jobs, settled = claims.claim_jobs(jobs, settled, options=options,
                                          model_name=model, overwrite=overwrite, wait=wait, on_wait=on_wait)
        for result in settled:
            report(result)
        for job in jobs:
            media.remove_stale_temp_files(job.output.parent)
        if jobs:
            executor = executor or LocalExecutor(lambda: Scorer(model))
            executor.run(jobs, on_result=report, on_step=on_step, on_total=on_total)
    return results


def score(path: str | Path, *, style: str | None = None, output: str | Path | None = None,
          model: str = DEFAULT_MODEL, device: str = "auto", quantize: str | None = None,
          overwrite: bool = False, stems: bool = False, plot: bool = False, timelines: Sequence[str] = (),
          options: ScoreOptions | None = None) -> ScoreResult:
    """Score one file: generate music of its exact length in ``style`` and mux it in.

    Loads the model for this call (after checking the input); use :class:`Scorer` to score many clips
    with one load.

    Parameters
    ----------
    path : str or Path
        The video (or audio file).
    style : str, optional
        Text description of the music; replaces ``options.style`` when given.
    output : str or Path, optional
        Destination; default ``NAME.scored.EXT`` beside the input.
    model : str
        Hub id or local folder.
    device, quantize : str
        As for :class:`Scorer`.
    options : ScoreOptions, optional
        Full settings.

    Returns
    -------
    ScoreResult

    Raises
    ------
    ScoretrackError
        Bad settings, unreadable input, existing output, or no model.
    """
    request = ClipRequest(Path(path), None if output is None else Path(output), with_style(options, style))
    side = SideOutputs(stems=stems, plot=plot, timelines=tuple(timelines))
    [result] = score_many([request], model=model, overwrite=overwrite, side=side,
                          executor=LocalExecutor(lambda: Scorer(model, device=device, quantize=quantize)))
    if result.status == "failed":
        raise result.exception
    return result
