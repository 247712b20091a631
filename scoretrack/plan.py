"""Plan, then work: name and check every output and side file of a job list before any model work.

:func:`plan_jobs` probes each input once, names its output and side files, checks that no two jobs
write one file, that every folder exists and is writable, that no output is an input or a folder,
that the output container can hold the picture, and decides from the sidecar record (by content, not
by settings alone) whether the clip is done, needs only missing side files, or must be scored.
Every refusal is a per-clip ``failed`` result; nothing heavy has run when the plan is complete.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

from . import media, scenes
from .errors import BadParameterError, OutputExistsError, ScoretrackError
from .options import CODEC_FRAME_RATE, MAX_TAKES, MixOptions, ScoreOptions, take_seed
from .results import ScoreResult, TakeResult
from .timelines import AUDIO_ONLY_RATE, TIMELINE_KINDS, check_rate, check_timeline_support, source_rate

STEM_FORMATS = {  # --stem-format: (file extension, soundfile format, subtype)
    "wav16": (".wav", "WAV", "PCM_16"),
    "wav24": (".wav", "WAV", "PCM_24"),
    "float": (".wav", "WAV", "FLOAT"),
    "flac": (".flac", "FLAC", "PCM_24"),
}
NAME_MAX = 255  # bytes in one file name on common file systems
TEMP_NAME_EXTRA = len(".scoretrack-4294967295-xxxxxxxx")  # what atomic_output adds to a name
SAMPLE_BYTES = 1 << 20  # the input identity hashes the first and last MiB
SLUG_CHARS = 40  # longest style tag in a default output name
FIGURES = ("loudness_lufs", "true_peak_dbtp", "loudness_gain_db")  # a take's measured figures, kept in its sidecar
SHORTFALL_NOTE_LU = 0.5  # a take this far or further under its loudness target gets a note


@dataclass(frozen=True)
class SideOutputs:
    """Which side files a run asks for, besides the scored output."""

    stems: bool = False  # NAME.scored.music.wav (ducked) and NAME.scored.music-dry.wav (un-ducked)
    stem_format: str = "wav24"  # wav16, wav24, float or flac
    plot: bool = False  # NAME.scored.png
    timelines: tuple[str, ...] = ()  # "otio", "fcp7", "fcpxml" and/or "kdenlive"
    timeline_rate: str | float | Fraction = AUDIO_ONLY_RATE  # fps of timelines without a picture (25, 23.976...)

    def validate(self) -> None:
        """Check the settings, and that the libraries the side files need are installed (before any work)."""
        if self.stem_format not in STEM_FORMATS:
            raise BadParameterError(f"stem_format={self.stem_format!r} must be one of {', '.join(STEM_FORMATS)}")
        if self.plot and importlib.util.find_spec("matplotlib") is None:
            raise BadParameterError("--plot needs matplotlib, which is not installed: pip install 'scoretrack[plot]'")
        check_timeline_support(self.timelines)
        if "fcpxml" in self.timelines and STEM_FORMATS[self.stem_format][1] == "FLAC":
            raise BadParameterError("--timeline fcpxml needs WAV stems (--stem-format wav16, wav24 or float): "
                                    "Final Cut Pro does not import FLAC")
        check_rate(self.timeline_rate)

    def paths(self, output: Path, *, timelines: bool = True) -> dict[str, Path]:
        """Side file name -> path, beside ``output``; without the timelines when ``timelines`` is False
        (a clip's timelines belong to the take that holds them; the others only give them their dry stems)."""
        extension = STEM_FORMATS[self.stem_format][0]
        paths = {}
        if self.stems:
            paths["music"] = output.with_name(f"{output.stem}.music{extension}")
        if self.stems or self.timelines:  # a timeline's music track is the dry stem
            paths["music-dry"] = output.with_name(f"{output.stem}.music-dry{extension}")
        if self.plot:
            paths["plot"] = output.with_name(f"{output.stem}.png")
        for kind in self.timelines if timelines else ():
            paths[kind] = output.with_name(f"{output.stem}{TIMELINE_KINDS[kind]}")
        return paths


@dataclass(frozen=True)
class ClipRequest:
    """One clip as asked for: the input, its output and its settings.

    Without ``output`` the output is ``NAME.scored.EXT`` in ``out_dir``, or beside the input."""

    path: Path
    output: Path | None = None
    options: ScoreOptions = field(default_factory=ScoreOptions)
    out_dir: Path | None = None
    refused: BadParameterError | None = None  # why the request cannot be scored (a bad manifest row): it fails


@dataclass(frozen=True)
class Take:
    """One take of a clip: its seed, its output and side files, and what is left to make of them."""

    number: int  # 1, 2, ...: take 1 is what a run without takes makes
    seed: int  # the generation seed of the take (options.take_seed)
    output: Path
    side: dict[str, Path]  # every side file asked for (name -> path); timelines only on the clip's first take
    make: tuple[str, ...]  # what to write: "output" and/or side file names (only missing ones on a resume)
    fingerprint: str

    @property
    def needs_music(self) -> bool:
        """Whether something left to make holds the take's music (a timeline alone needs only its dry stem)."""
        return any(name not in TIMELINE_KINDS for name in self.make)


@dataclass
class Job:
    """A checked clip: everything its takes write is named, and what is left to make is decided."""

    index: int  # position in the job list; results come back in this order
    info: media.MediaInfo
    options: ScoreOptions
    # the main output's take first (see picked_take), then options.take_numbers' order, then the other takes on
    # disk that its timelines keep (kept_takes)
    takes: tuple[Take, ...]
    layout: str = "stereo"  # channel layout of the new soundtrack
    encoding: media.AudioEncoding | None = None  # how it is encoded (None: media.audio_encoding's auto)
    stem_format: str = "wav24"
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage so far (probe)
    notes: tuple[str, ...] = ()  # what the output cannot keep of the input (media.output_notes)
    timeline_rate: Fraction = AUDIO_ONLY_RATE  # the rate its timelines run at (the picture's, when it has one)

    @property
    def path(self) -> Path:
        return self.info.path

    @property
    def output(self) -> Path:
        """The first take's output (the clip's own name)."""
        return self.takes[0].output

    def timeline_takes(self) -> tuple[Take, ...]:
        """The takes its timelines hold, the one that holds them first (it plays there): the main output's
        take when it is on disk or made now."""
        return tuple(timeline_order(self.takes))

    def to_generate(self) -> tuple[Take, ...]:
        """The takes that have something left to make."""
        return tuple(take for take in self.takes if take.make)

    def files(self) -> list[Path]:
        """Every file the job may write: each take's output, sidecar and side files."""
        return [path for take in self.takes for path in (take.output, sidecar_path(take.output), *take.side.values())]


def timeline_order(takes: Sequence) -> list:
    """``takes`` (:class:`Take` or :class:`~scoretrack.results.TakeResult`) in the order a clip's timelines hold
    them: the take whose side files hold the timelines first, the others as they come."""
    return sorted(takes, key=lambda take: not TIMELINE_KINDS & take.side.keys())


def take_output(output: Path, number: int, *, picked: int = 1) -> Path:
    """Take ``number``'s output: ``output`` itself for the ``picked`` take (take 1 unless ``scoretrack pick``
    chose another), else ``NAME.takeN.EXT`` beside it, where take 1 holds the name of the take picked
    in its place (the two swap names; every other take keeps its own)."""
    if number == picked:
        return output
    shown = picked if number == 1 else number
    return output.with_name(f"{output.stem}.take{shown}{output.suffix}")


def picked_take(output: Path, fingerprint) -> int:
    """Which take a clip's main ``output`` holds: the take its sidecar records (``scoretrack pick``
    makes it another than 1), when that record is of these settings (``fingerprint(number)`` gives a
    take's), else 1."""
    record = read_sidecar(output) or {}
    take = record.get("take", 1)
    if isinstance(take, int) and not isinstance(take, bool) and take > 1 and record.get("fingerprint") == fingerprint(take):
        return take
    return 1


def default_output(info: media.MediaInfo, tag: str = "") -> Path:
    """``NAME.scored.EXT`` beside the input, in a container that can hold its picture (or its audio);
    ``NAME.scored.TAG.EXT`` with a tag (one of several settings of one input, see :func:`output_tags`)."""
    return info.path.with_name(f"{info.path.stem}.scored{'.' + tag if tag else ''}{media.default_output_extension(info)}")


def _slug(text: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))[:SLUG_CHARS].strip("-") or "style"


def output_tags(requests: Sequence[ClipRequest], model_name: str) -> list[str]:
    """The tag of each request's default output name: empty, unless other requests of the same input
    (and folder) without an output of their own ask for other settings; then the style's words
    (``calm-piano``), with the settings' fingerprint where those are not enough to tell them apart.
    Requests with equal settings keep equal names (and are refused as one output written twice)."""
    groups: dict[tuple, list[int]] = {}
    for index, request in enumerate(requests):
        if request.output is None and request.refused is None:
            groups.setdefault((os.path.abspath(request.path), request.out_dir), []).append(index)
    tags = [""] * len(requests)
    for members in groups.values():
        prints = {index: requests[index].options.fingerprint(model_name) for index in members}
        if len(set(prints.values())) < 2:
            continue
        slugs = {index: _slug(requests[index].options.style) for index in members}
        for index in members:
            same_slug = {prints[other] for other in members if slugs[other] == slugs[index]}
            tags[index] = slugs[index] if len(same_slug) == 1 else f"{slugs[index]}-{prints[index][:6]}"
    return tags


def sidecar_path(output: Path) -> Path:
    """The JSON record of how an output was made (used to resume)."""
    return output.with_name(f"{output.name}.scoretrack.json")


def file_identity(path: Path) -> dict:
    """Size and a hash of the first and last MiB: cheap, and changes when the content does; for outputs
    and side files, which only scoretrack writes (a copy or a touch leaves it as it is)."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        digest.update(handle.read(SAMPLE_BYTES))
        if size > 2 * SAMPLE_BYTES:
            handle.seek(-SAMPLE_BYTES, os.SEEK_END)
        digest.update(handle.read(SAMPLE_BYTES))
    return {"size": size, "sha256_ends": digest.hexdigest()}


def input_identity(path: Path) -> dict:
    """Size and SHA-256 of the whole file: an input is the same input when its bytes are, wherever it
    lies and whatever its times (moved, copied, renamed, touched). Read at disk speed, once per file
    version in a process (:func:`_content_hash` is kept by path, inode, size and times)."""
    stat = path.stat()
    return {"size": stat.st_size,
            "sha256": _content_hash(str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns,
                                    stat.st_ctime_ns)}


@functools.lru_cache(maxsize=1024)
def _content_hash(path: str, *version) -> str:
    """SHA-256 of a file's bytes, streamed; ``version`` (device, inode, size, times) keys the cache only."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _same_input(record: dict, path: Path) -> tuple[bool, str]:
    """Whether ``path`` is the input ``record`` (a sidecar's ``input``) was made from, and if not, why.

    Records with the whole file's hash compare by content alone. Older records (a hash of the file's
    ends and its modification time) compare as they were written: the same path, size, time and ends.
    Other bytes under the recorded file name (wherever it lies now) are this input, changed since;
    under another name, another input (the reason says which)."""
    if "sha256" in record:
        if all(record.get(key) == value for key, value in input_identity(path).items()):
            return True, ""
    else:
        stat = path.stat()
        if (record.get("path") == str(path.resolve()) and record.get("mtime_ns") == stat.st_mtime_ns
                and same_file(record, path)):
            return True, ""
    recorded = record.get("path")
    if recorded != str(path.resolve()) and ("sha256" not in record or Path(recorded or "").name != path.name):
        return False, f"was made from another input ({recorded})"
    return False, ""


def read_sidecar(output: Path) -> dict | None:
    try:
        return json.loads(sidecar_path(output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def sidecar_record(job: Job, take: Take, made: dict[str, Path], earlier: dict | None = None,
                   figures: dict | None = None) -> dict:
    """What a take's sidecar says after this run: the input and output identities, every side file
    made (a timeline also records the takes it holds) and the output's ``figures`` (loudness and true
    peak as delivered, the loudness gain; kept from ``earlier`` when the output was not made again)."""
    kept = "output" not in take.make
    side = dict((earlier or {}).get("side", {})) if kept else {}
    figures = take_figures(earlier) if kept else (figures or {})
    numbers = [t.number for t in job.timeline_takes()]  # the takes its timelines hold
    side.update({name: {"name": path.name, **file_identity(path), **({"takes": numbers} if name in TIMELINE_KINDS else {})}
                 for name, path in made.items()})
    return {"fingerprint": take.fingerprint, "take": take.number, "seed": take.seed,
            "input": {"path": str(job.path.resolve()), **input_identity(job.path)},
            "output": file_identity(take.output), "side": side, **figures}


def take_figures(record: dict | None) -> dict:
    """A take's loudness and true peak as its sidecar records them (those it has)."""
    return {name: record[name] for name in FIGURES if name in (record or {})}


def pending_record(take: Take) -> dict:
    """The sidecar a take has while its files are written: the names of every file it may write, so that
    a rerun after a kill (SIGKILL, power loss) knows them for its own and makes the take again."""
    return {"fingerprint": take.fingerprint, "take": take.number,
            "pending": sorted([take.output.name, *(path.name for path in take.side.values())])}


def same_file(record: dict | None, path: Path) -> bool:
    """Whether ``path`` has the size and ends ``record`` (of :func:`file_identity`) gives."""
    if not record or not path.is_file():
        return False
    now = file_identity(path)
    return all(record.get(key) == value for key, value in now.items())


def resume_state(output: Path, input_path: Path, fingerprint: str, side: dict[str, Path],
                 takes: Sequence[int] = (1,)) -> tuple[str, tuple[str, ...], str]:
    """Decide from the sidecar and the files themselves what is left to do for one take of a clip.

    A timeline made with other takes than ``takes`` counts as missing.

    Returns ``(state, missing_side, reason)`` with state ``done`` (output and side files are this
    input's, made with these settings), ``stale`` (our own output of this same input and settings,
    but the input has changed since: redo), ``fresh`` (no output yet) or ``foreign`` (an output that is
    not provably this job's: another input's, other settings, edited, or not made by scoretrack).
    """
    if not output.exists():
        return "fresh", (), ""
    record = read_sidecar(output)
    if record is None:
        return "foreign", (), "has no scoretrack record"
    if "pending" in record:
        return "stale", (), "a run stopped while writing it"
    if not same_file(record.get("output"), output):
        return "foreign", (), "was changed since scoretrack wrote it"
    same, other_input = _same_input(record.get("input", {}), input_path)
    if other_input:
        return "foreign", (), other_input
    if record.get("fingerprint") != fingerprint:
        return "foreign", (), "was made with other settings"
    if not same:
        return "stale", (), "the input has changed since"
    made = record.get("side", {})
    missing = tuple(name for name, path in side.items()
                    if name not in made or made[name].get("name") != path.name
                    or not same_file(made[name], path)
                    or (name in TIMELINE_KINDS and made[name].get("takes", [1]) != list(takes)))
    return "done", missing, ""


def check_writable(path: Path) -> None:
    """Raise :class:`BadParameterError` unless ``path`` can be created or replaced by a rename."""
    if path.is_dir():
        raise BadParameterError(f"{path}: is a folder; give a file name for the output")
    if len(os.fsencode(path.name)) + TEMP_NAME_EXTRA > NAME_MAX:
        raise BadParameterError(f"{path.name[:40]}...: file name too long ({len(os.fsencode(path.name))} bytes; "
                                f"outputs need at most {NAME_MAX - TEMP_NAME_EXTRA})")
    folder = path.parent
    if not folder.is_dir():
        raise BadParameterError(f"{path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadParameterError(f"{path}: folder {folder} is not writable")


def output_layout(info: media.MediaInfo, options: ScoreOptions, *, music_channels: int = 1) -> str:
    """Channel layout of the new soundtrack: the source's own (music on front left/right, or on the one
    channel of a mono source), or stereo.

    No sound at all, a mode other than ``mix``, ``output_layout="stereo"``, or a mono source with
    stereo music (``music_channels`` 2, a stereo MusicGen) give stereo.
    """
    keep = options.mix.output_layout == "keep" and options.mix.mode == "mix" and info.has_audio
    if keep and (info.audio[0].channels > 2 or info.audio[0].channels == 1 == music_channels):
        return info.audio[0].layout
    return "stereo"


def layout_notes(info: media.MediaInfo, options: ScoreOptions, layout: str) -> list[str]:
    """One line when a source's layout is not kept although ``keep`` asks for it: a mono source scored
    in stereo because the model's music is stereo."""
    keep = options.mix.output_layout == "keep" and options.mix.mode == "mix" and info.has_audio
    if keep and info.audio[0].channels == 1 and layout == "stereo":
        return ["mono sound scored in stereo: the model's music is stereo (a mono MusicGen keeps it mono)"]
    return []


def plan_jobs(requests: Sequence[ClipRequest], *, model_name: str, side: SideOutputs = SideOutputs(),
              overwrite: bool = False) -> tuple[list[Job], list[ScoreResult]]:
    """Check every clip and name everything it writes; return the jobs to run and the clips already settled.

    Settled clips are ``skipped`` (done, with every side file asked for) or ``failed`` (the reason in
    the result). A job's ``make`` is ``("output", *side files)``, or only the missing side files of a
    clip that is otherwise done.
    """
    side.validate()
    inputs = set()
    for request in requests:
        try:
            inputs.add(Path(request.path).resolve())
        except OSError:
            pass
    family = known_family(model_name)
    writers: dict[Path, int] = {}
    jobs: list[Job] = []
    settled: list[ScoreResult] = []
    for index, (request, tag) in enumerate(zip(requests, output_tags(requests, model_name))):
        try:
            if request.refused is not None:
                raise request.refused
            request = dataclasses.replace(request, options=planned_options(request.options, family))
            job = _plan_one(index, request, model_name=model_name, side=side, overwrite=overwrite, inputs=inputs,
                            tag=tag, music_channels=family.audio_channels if family else 1)
            for path in job.files():
                key = path.resolve()
                if key in writers:
                    other = requests[writers[key]].path
                    raise BadParameterError(f"{path}: also written by the job for {other}; give each clip its own output")
            for path in job.files():
                writers[path.resolve()] = index
        except Exception as error:  # every refusal, expected or not, is this clip's alone
            settled.append(ScoreResult.failure(index, request.path, error))
            continue
        if job.to_generate():
            jobs.append(job)
        else:
            settled.append(skipped_result(job))
    return jobs, settled


def skipped_result(job: Job) -> ScoreResult:
    """The result of a clip whose takes are all done, with every side file asked for; its figures are its
    first take's, as each take's sidecar records them."""
    takes = [TakeResult(number=take.number, seed=take.seed, output=take.output, side=dict(take.side), status="skipped",
                        **take_figures(read_sidecar(take.output))) for take in job.takes]
    return ScoreResult(index=job.index, input=job.path, output=job.output, status="skipped", seed=job.takes[0].seed,
                       duration_s=job.info.duration_s, side=dict(job.takes[0].side), takes=takes,
                       loudness_lufs=takes[0].loudness_lufs, true_peak_dbtp=takes[0].true_peak_dbtp,
                       loudness_gain_db=takes[0].loudness_gain_db,
                       notes=[*job.notes, *loudness_notes(job.options.mix, takes)])


def loudness_notes(options: MixOptions, takes: Sequence[TakeResult]) -> list[str]:
    """A line for each take whose delivered loudness stays ``SHORTFALL_NOTE_LU`` or more under the target:
    reaching it would have asked the peak limiter for more than ``options.max_limiting_db``."""
    notes = []
    for take in takes:
        lufs = take.loudness_lufs
        if lufs is None or not math.isfinite(lufs) or lufs > options.target_lufs - SHORTFALL_NOTE_LU:
            continue
        which = f"take {take.number}: " if len(takes) > 1 else ""
        notes.append(f"{which}loudness {lufs:.1f} LUFS, {options.target_lufs - lufs:.1f} LU under the "
                     f"{options.target_lufs:g} LUFS target: more would need the peak limiter to take over "
                     f"{abs(options.max_limiting_db):g} dB off the peaks (see --max-limiting)")
    return notes


def take_make(output: Path, input_path: Path, fingerprint: str, side: dict[str, Path], *, takes: Sequence[int],
              overwrite: bool) -> tuple[str, ...]:
    """What is left to write of one take, from :func:`resume_state`: ``("output", *side)``, only its
    missing side files, or nothing (done).

    Raises
    ------
    OutputExistsError
        Without ``overwrite``: the output is not provably this take's, or a side file to write exists
        and is not one scoretrack made for it.
    """
    state, missing, reason = resume_state(output, input_path, fingerprint, side, takes=takes)
    if state == "foreign" and not overwrite:
        raise OutputExistsError(f"{output}: already exists and {reason} (use --force to replace it)")
    make = missing if state == "done" and not overwrite else ("output", *side)
    if not overwrite:
        _check_own_side_files(output, {name: side[name] for name in make if name != "output"})
    return make


def check_clip_settings(info: media.MediaInfo, options: ScoreOptions) -> None:
    """What the clip's settings need of the clip itself, before any model work: that its window seams
    can be planned (style changes on seams, within its length) and that its melody file is audio.

    Raises
    ------
    BadParameterError, UnreadableMediaError
        Named after the clip, in the command's option names.
    """
    try:  # the cuts are not known yet; style changes are seams whether they move or not
        scenes.seam_plan(info.duration_s, options, frame_rate=CODEC_FRAME_RATE)
    except BadParameterError as error:
        raise BadParameterError(f"{info.path}: --style-at: {error}") from None
    if options.melody.source == "file":
        try:
            melody = media.probe(options.melody.file)
        except ScoretrackError as error:
            raise type(error)(f"--melody-file {error}") from None
        if not melody.has_audio:
            raise BadParameterError(f"--melody-file {melody.path}: has no audio to take a melody from")


def planned_options(options: ScoreOptions, family) -> ScoreOptions:
    """The options a clip is planned (and fingerprinted) with: melody "auto" made what the model family
    takes (``family`` from :func:`known_family`; None: unknown until the model loads)."""
    return options if family is None else options.for_model(family.takes_melody)


def known_family(model_name: str):
    """The model's family when its config or name tells it, else None (the load will say what is wrong)."""
    from .model import model_family

    try:
        return model_family(model_name)
    except ScoretrackError:
        return None


def _plan_one(index: int, request: ClipRequest, *, model_name: str, side: SideOutputs, overwrite: bool,
              inputs: set[Path], tag: str = "", music_channels: int = 1) -> Job:
    start = time.perf_counter()
    info = media.probe(request.path)
    probe_s = time.perf_counter() - start
    check_clip_settings(info, request.options)
    output = Path(request.output) if request.output is not None else default_output(info, tag)
    if request.output is None and request.out_dir is not None:
        output = Path(request.out_dir) / output.name
    layout = output_layout(info, request.options, music_channels=music_channels)
    encoding = media.audio_encoding(info, output, codec=request.options.audio_codec,
                                    bit_rate=request.options.audio_bitrate)
    media.check_output(info, output, layout=layout, encoding=encoding)
    rate = source_rate(info, audio_only_rate=side.timeline_rate) if side.timelines else AUDIO_ONLY_RATE
    picked = picked_take(output, lambda number: request.options.fingerprint(model_name, number))
    # the main output's take goes first: it holds the timelines, where it is the take that plays
    numbers = sorted(request.options.take_numbers, key=lambda number: number != picked)
    for number in numbers:
        take_out = take_output(output, number, picked=picked)
        for path in [take_out, *side.paths(take_out, timelines=number == numbers[0]).values()]:
            check_writable(path)
            if path.resolve() in inputs:
                raise BadParameterError(f"{path}: {'the output' if path == take_out else 'a side file'} "
                                        "would overwrite an input")
    kept = (kept_takes(output, info.path, request.options, model_name, side, numbers, picked=picked)
            if side.timelines else ())
    # the main output's take holds the timelines when it is on disk (--take 3 adds take 3 to them), else the first
    holder = picked if picked in numbers or any(take.number == picked for take in kept) else numbers[0]
    on_timeline = sorted([*numbers, *(take.number for take in kept)], key=lambda number: number != holder)
    takes = []
    for number in numbers:
        take_out = take_output(output, number, picked=picked)
        side_paths = side.paths(take_out, timelines=number == holder)
        fingerprint = request.options.fingerprint(model_name, number)
        make = take_make(take_out, info.path, fingerprint, side_paths, takes=on_timeline, overwrite=overwrite)
        takes.append(Take(number=number, seed=take_seed(request.options.generation.seed, number), output=take_out,
                          side=side_paths, make=make, fingerprint=fingerprint))
    kept = tuple(holding(take, side, info.path, on_timeline, overwrite=overwrite) if take.number == holder else take
                 for take in kept)
    notes = media.output_notes(info, output) + layout_notes(info, request.options, layout)
    return Job(index=index, info=info, options=request.options, takes=(*takes, *kept), layout=layout,
               encoding=encoding, stem_format=side.stem_format, timings={"probe": probe_s}, notes=tuple(notes),
               timeline_rate=rate)


def kept_takes(output: Path, input_path: Path, options: ScoreOptions, model_name: str, side: SideOutputs,
               numbers: Sequence[int], *, picked: int = 1) -> tuple[Take, ...]:
    """The takes besides ``numbers`` already on disk, made from this input with these settings, with the dry
    stem a timeline plays: they stay on the clip's timelines (nothing of them is made again).

    A take made without a dry stem (no ``--stems`` or ``--timeline`` then) cannot be on a timeline."""
    kept = []
    for number in range(1, MAX_TAKES + 1):
        take_out = take_output(output, number, picked=picked)
        if number in numbers or not take_out.exists():
            continue
        dry = {"music-dry": side.paths(take_out, timelines=False)["music-dry"]}
        fingerprint = options.fingerprint(model_name, number)
        state, missing, _ = resume_state(take_out, input_path, fingerprint, dry)
        if state == "done" and not missing:
            kept.append(Take(number=number, seed=take_seed(options.generation.seed, number), output=take_out,
                             side=dry, make=(), fingerprint=fingerprint))
    return tuple(kept)


def holding(take: Take, side: SideOutputs, input_path: Path, on_timeline: Sequence[int], *,
            overwrite: bool) -> Take:
    """A kept take (:func:`kept_takes`) that holds the clip's timelines: those of them to make again, its
    music left as it is."""
    paths = {**take.side, **{kind: path for kind, path in side.paths(take.output).items() if kind in TIMELINE_KINDS}}
    make = take_make(take.output, input_path, take.fingerprint, paths, takes=on_timeline, overwrite=overwrite)
    return dataclasses.replace(take, side=paths, make=tuple(name for name in make if name in TIMELINE_KINDS))


def _check_own_side_files(output: Path, paths: dict[str, Path]) -> None:
    """Refuse to replace a side file unless the take's sidecar records it, unchanged: an edited
    timeline or a user's own file of that name is never overwritten without ``overwrite``. Files a
    killed run left (its pending record names them) are its own, to be made again."""
    record = read_sidecar(output) or {}
    made, pending = record.get("side", {}), record.get("pending", [])
    for name, path in paths.items():
        if path.exists() and path.name not in pending and not (made.get(name, {}).get("name") == path.name
                                                               and same_file(made[name], path)):
            raise OutputExistsError(f"{path}: already exists and is not a file scoretrack made for {output.name} "
                                    "or was changed since (use --force to replace it)")
