"""``scoretrack FILE... --style TEXT``: a thin shell over :func:`scoretrack.pipeline.score_many`.

Exit codes: 0 every clip scored (or skipped as already done), 1 some clip failed, 2 bad usage or an
unreadable single input, 130/143/129 interrupted by Ctrl-C/SIGTERM/SIGHUP. Errors are one line on
stderr; ``--debug`` shows tracebacks. Only light modules are imported until the arguments are checked,
so ``--help`` and bad arguments answer at once.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib.util
import json
import logging
import re
import signal
import sys
import time
import traceback
import unicodedata
import warnings
from pathlib import Path

from . import __version__
from .errors import BadParameterError, ScoretrackError
from .options import (CUT_REACH_S, FRESH_S, MAX_SEED, MAX_TAKES, MELODY_SOURCES, MIN_PROMPT_S, MIX_MODES, OUTPUT_LAYOUTS,
                      QUANTIZATIONS, TOP_P_MIN, GenerationOptions, MelodyOptions, MixOptions, ScoreOptions,
                      parse_audio_codec, parse_time)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_MODEL = "facebook/musicgen-melody"
MANIFEST_COLUMNS = {"path", "style", "seed", "output", "melody", "guidance", "styles", "takes"}
# each option field as the command line spells it: errors name the flag the user typed (BadParameterError.named)
FLAGS = {"window_s": "--window", "stride_s": "--stride", "guidance_scale": "--guidance", "temperature": "--temperature",
         "top_k": "--top-k", "top_p": "--top-p", "seed": "--seed", "batch_size": "--batch-size",
         "independent_windows": "--independent-windows", "mode": "--mix", "depth_db": "--duck-depth",
         "music_level_db": "--music-level", "target_lufs": "--loudness", "true_peak_dbtp": "--true-peak",
         "max_limiting_db": "--max-limiting", "fade_in_s": "--fade-in",
         "fade_out_s": "--fade-out", "output_layout": "--output-layout", "source": "--melody", "file": "--melody-file",
         "style": "--style", "styles_at": "--style-at", "takes": "--takes", "take": "--take"}
# each option field a manifest column sets, and its column (the other fields come from the command line)
COLUMNS = {"style": "style", "seed": "seed", "guidance_scale": "guidance", "source": "melody", "styles_at": "styles",
           "takes": "takes"}


class Interrupted(BaseException):
    """A termination signal, handled like Ctrl-C: outputs in progress are removed, nothing is left half-written."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_received: list[int] = []  # Ctrl-C and termination signals seen, in order


def _raise_interrupted(signum, _frame):
    _received.append(signum)
    raise_if_stopped()


def _unraisable(report) -> None:
    """Python's hook for exceptions it cannot raise: a stop lost this way is raised again by
    :func:`raise_if_stopped`, so it prints nothing; anything else goes to Python's own hook."""
    if not isinstance(report.exc_value, (KeyboardInterrupt, Interrupted)):
        sys.__unraisablehook__(report)


def raise_if_stopped() -> None:
    """Raise (again) for the first Ctrl-C or termination signal received: KeyboardInterrupt or Interrupted.

    A handler's exception is lost when the signal lands while a finalizer or garbage-collector
    callback runs (Python only prints it), so the run checks at every step and clip, and at its end."""
    if _received:
        raise KeyboardInterrupt if _received[0] == signal.SIGINT else Interrupted(_received[0])


def _span(ranges: dict[str, tuple[float, float]], name: str, unit: str = "") -> str:
    """An option's range as the validators check it, e.g. ``1 to 20``."""
    low, high = ranges[name]
    high_text = f"2^{high.bit_length()}-1" if high == MAX_SEED else f"{high:g}"
    return f"{low:g} to {high_text}{unit}"


def _epilog() -> str:
    interrupted = ", ".join(f"{128 + s} {s.name}" for s in STOP_SIGNALS)
    return f"""examples:
  scoretrack clip.mp4 --style "cinematic strings"
      writes clip.scored.mp4 beside clip.mp4: the picture copied, the music ducked under the dialogue
  scoretrack film.mov --style "calm piano" --style-at 1:30="tense strings" --stems --timeline fcp7
      a style change at 1:30, the music as stems, and a timeline for Premiere Pro or Final Cut Pro 7
  scoretrack *.mp4 --out-dir scored/ --json > report.json
      many clips, the model loaded once; a JSON array of per-clip results on stdout
  scoretrack *.mp4 --takes 3 --out-dir scored/ --review
      three takes each, auditioned in scored/review.html; "scoretrack pick picks.json" keeps the chosen ones

exit codes:
  {EXIT_OK}  every clip scored (or skipped: already done with these settings)
  {EXIT_FAILED}  some clip failed; the others were scored and the summary names the failures
  {EXIT_USAGE}  bad usage, or a single input that cannot be scored (one line on stderr)
  {interrupted}: interrupted (Ctrl-C, kill, hangup); no partial output is left
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad argument told in one line (not the whole usage) and exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"scoretrack: error: {message} (scoretrack --help lists every option)\n")


class _Once(argparse.Action):
    """An option that may be given once: a second value is refused rather than silently kept."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest) is not None:
            parser.error(f"{option_string} given twice ({getattr(namespace, self.dest)} and {values}); give it once")
        setattr(namespace, self.dest, values)


def build_parser() -> argparse.ArgumentParser:
    d, m = GenerationOptions(), MixOptions()
    gen, mix = GenerationOptions.RANGES, MixOptions.RANGES
    prompt_s = d.window_s - d.stride_s
    p = _Parser(
        prog="scoretrack",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score videos (or audio files) with MusicGen: music of the exact length, ducked under\n"
                    "speech, muxed without re-encoding the picture. A file name starting with '-' goes after '--'.",
        epilog=_epilog(),
    )
    p.add_argument("inputs", nargs="*", metavar="FILE",
                   help="videos (or wav, flac, mp3, m4a, ogg, opus audio, scored into their own format) to score")
    p.add_argument("--version", action="version", version=f"scoretrack {__version__}")
    p.add_argument("--style", default=ScoreOptions.style, help="text description of the music (default: %(default)r)")
    p.add_argument("--style-at", action="append", default=[], metavar="TIME=STYLE",
                   help="change the style from TIME (seconds, m:ss or h:mm:ss) on, e.g. 0:45='tense strings'; "
                        "repeatable. Each change becomes a window seam, so it must be at least prompt/2 + "
                        f"{FRESH_S:g} s from the clip's start and end and prompt + {FRESH_S:g} s from the next "
                        f"change, where prompt = --window minus --stride ({MIN_PROMPT_S:g} s with --follow-cuts), "
                        f"{MIN_PROMPT_S:g} s to (--window - "
                        f"{FRESH_S:g}) / 2 (by default prompt = {prompt_s:g} s: changes from "
                        f"{prompt_s / 2 + FRESH_S:g} s in, {prompt_s + FRESH_S:g} s apart); not with --independent-windows")
    p.add_argument("-o", "--output", help="output file (one input only); default NAME.scored.EXT beside it")
    p.add_argument("--out-dir", help="folder for the outputs of many inputs, made if missing (default: beside each input)")
    p.add_argument("--manifest",
                   help="CSV with header path,style and optional seed,output,melody,guidance,styles,takes columns")
    g = p.add_argument_group("model")
    g.add_argument("--model", default=DEFAULT_MODEL, help="hub id or local folder (default: %(default)s)")
    g.add_argument("--device", default="auto",
                   help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps (default: %(default)s)")
    g.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                   help="auto: float32 on CPU, bfloat16/float16 on GPU (default: %(default)s)")
    g.add_argument("--quantize", choices=QUANTIZATIONS,
                   help="int8: int8 decoder weights on CPU, about 4x faster decode steps (with --device cpu; "
                        "default: none)")
    g = p.add_argument_group("generation")
    g.add_argument("--seed", type=int, default=d.seed,
                   help=f"random seed, {_span(gen, 'seed')}; same seed, same music (default: %(default)s)")
    g.add_argument("--takes", type=int, action=_Once,
                   help=f"takes of every clip to choose from, 1 to {MAX_TAKES}: take 1 is NAME.scored.EXT (the same "
                        "music as without --takes), take N is NAME.scored.takeN.EXT, each with its own stems, plot "
                        "and sidecar; timelines hold every take on its own muted track (default: 1)")
    g.add_argument("--take", type=int, metavar="N", action=_Once,
                   help=f"make take N alone (1 to {MAX_TAKES}), the same music as take N of a --takes run "
                        "(default: takes 1 to --takes)")
    g.add_argument("--guidance", type=float, default=d.guidance_scale,
                   help=f"classifier-free guidance scale, {_span(gen, 'guidance_scale')}; 1 turns it off "
                        "(half the compute) (default: %(default)s)")
    g.add_argument("--temperature", type=float, default=d.temperature,
                   help=f"sampling temperature, {_span(gen, 'temperature')} (default: %(default)s)")
    g.add_argument("--top-k", type=int, default=d.top_k,
                   help=f"sample among the k likeliest codes, {_span(gen, 'top_k')} (default: %(default)s)")
    g.add_argument("--top-p", type=float, default=d.top_p,
                   help=f"then among the fewest of those whose probability reaches p, {_span(gen, 'top_p')}; "
                        f"0 turns it off, else at least {TOP_P_MIN:.3g} (default: %(default)s)")
    g.add_argument("--window", type=float, default=d.window_s,
                   help=f"window length, {_span(gen, 'window_s', ' s')} (the model's melody limit) (default: %(default)s)")
    g.add_argument("--stride", type=float,
                   help=f"window advance, {gen['stride_s'][0]:g} s to below --window (to --window with "
                        f"--independent-windows) (default: {d.stride_s:g}, or {d.stride_s / d.window_s:g} x --window "
                        f"for windows up to {d.stride_s:g} s)")
    g.add_argument("--independent-windows", action="store_true",
                   help="generate all windows at once without continuation (faster on GPU, less continuous)")
    g.add_argument("--follow-cuts", action="store_true",
                   help=f"move each window seam onto the picture's nearest cut within {CUT_REACH_S:g} s (decodes "
                        f"the picture); continuation prompts are then {MIN_PROMPT_S:g} s, so --window must be at "
                        f"least {2 * MIN_PROMPT_S + FRESH_S:g} s; not with --independent-windows")
    g.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"rows per generate() call, {_span(gen, 'batch_size')} (default: %(default)s)")
    g = p.add_argument_group("melody")
    g.add_argument("--melody", default="auto", choices=[s for s in MELODY_SOURCES if s != "file"],
                   help="melody reference: the input's audio (video), its harmonic part, or none (text only); "
                        "auto: video for a melody model, none for a text-only one (default: %(default)s)")
    g.add_argument("--melody-file", help="take the melody from this audio file instead (default: none)")
    g = p.add_argument_group("mixing")
    g.add_argument("--mix", default=m.mode, choices=MIX_MODES,
                   help="mix: original + ducked music; replace: music alone; music: ducked music alone "
                        "(default: %(default)s)")
    g.add_argument("--duck-depth", type=float, default=m.depth_db,
                   help=f"music gain under speech, {_span(mix, 'depth_db', ' dB')} (default: %(default)s)")
    g.add_argument("--music-level", type=float, default=m.music_level_db,
                   help=f"music loudness relative to the original audio, {_span(mix, 'music_level_db', ' dB')} "
                        "(default: %(default)s)")
    g.add_argument("--loudness", type=float, default=m.target_lufs,
                   help=f"target integrated loudness, {_span(mix, 'target_lufs', ' LUFS')} (default: %(default)s)")
    g.add_argument("--broadcast", action="store_true", help="broadcast loudness: -23 LUFS (replaces --loudness)")
    g.add_argument("--true-peak", type=float, default=m.true_peak_dbtp, metavar="DBTP",
                   help=f"ceiling for the true peak of the delivered file, {_span(mix, 'true_peak_dbtp', ' dBTP')} "
                        "(default: %(default)s)")
    g.add_argument("--max-limiting", type=float, default=m.max_limiting_db, metavar="DB",
                   help=f"the most the true-peak limiter takes off a peak, {_span(mix, 'max_limiting_db', ' dB')}; "
                        "where reaching --loudness would need more, the whole mix stays quieter, so stems and "
                        "timelines play as the file up to one gain (more: the target is met, and the file differs "
                        "from them where the limiter acts) (default: %(default)s)")
    g.add_argument("--fade-in", type=float, default=m.fade_in_s,
                   help=f"music fade-in, {_span(mix, 'fade_in_s', ' s')} (default: %(default)s)")
    g.add_argument("--fade-out", type=float, default=m.fade_out_s,
                   help=f"music fade-out, {_span(mix, 'fade_out_s', ' s')} (default: %(default)s)")
    g.add_argument("--output-layout", default=m.output_layout, choices=OUTPUT_LAYOUTS,
                   help="keep the source's channel layout (music on front left/right) or fold to stereo "
                        "(default: %(default)s)")
    g.add_argument("--keep-original-audio", action="store_true",
                   help="also copy the original audio tracks, as tracks that do not play by default")
    g = p.add_argument_group("outputs")
    g.add_argument("--force", action="store_true", help="redo clips whose output exists")
    g.add_argument("--audio-codec", default="auto", metavar="CODEC[:RATE]",
                   help="the output's sound: aac, opus, mp3 (with a bit rate per channel pair, e.g. aac:256k; "
                        "default 192k), pcm, flac or alac, as the container holds it; auto keeps PCM, FLAC and ALAC "
                        "sound lossless (with its bit depth) where the container holds one of them, else the "
                        "container's default (default: %(default)s)")
    g.add_argument("--stems", action="store_true",
                   help="also write NAME.scored.music.wav (ducked) and NAME.scored.music-dry.wav (un-ducked), 48 kHz")
    g.add_argument("--stem-format", default="wav24", choices=["wav16", "wav24", "float", "flac"],
                   help="stem sample format (default: %(default)s)")
    g.add_argument("--plot", action="store_true",
                   help="also write NAME.scored.png (sound and speech, ducking gain, music, seams, cuts, style changes)")
    g.add_argument("--timeline", action="append", default=[], choices=["otio", "fcp7", "fcpxml", "kdenlive"],
                   help="also write an editing timeline (picture, sound, dry music with the ducking as volume keys): "
                        "otio (NAME.scored.otio, DaVinci Resolve), fcp7 (NAME.scored.xml: Final Cut Pro 7 XML, for Premiere "
                        "Pro and Resolve), fcpxml (NAME.scored.fcpxml, Final Cut Pro X and later) or kdenlive (NAME.scored.kdenlive); repeatable "
                        "(default: none)")
    g.add_argument("--timeline-rate", default="25", metavar="FPS",
                   help="frame rate of the timelines of audio-only inputs: a whole number or 23.976, 29.97, 59.94 "
                        "(default: %(default)s; a video's timeline runs at its own rate)")
    g.add_argument("--review", action="store_true",
                   help="write review.html beside the outputs: each clip's takes to audition against its picture "
                        "and pick (then: scoretrack pick picks.json)")
    g.add_argument("--wait", action="store_true",
                   help="when another scoretrack run is writing an output, wait for it (default: report the clip "
                        "as taken)")
    g.add_argument("--json", action="store_true",
                   help="print a JSON array of per-clip results on stdout, whatever the exit (status ok, skipped, "
                        "failed, 'not started', or interrupted while its takes were written)")
    g.add_argument("--debug", action="store_true", help="show tracebacks")
    g.add_argument("--blender-addon", metavar="OUT.zip",
                   help="write the Blender Video Sequence Editor add-on as a zip for Blender's Install dialog "
                        "and score nothing (README: In Blender)")
    g = p.add_argument_group("cluster")
    g.add_argument("--ray", action="store_true", help="run on a local Ray cluster using this machine's devices")
    g.add_argument("--ray-address", help="join a Ray cluster (e.g. auto, ray://head:10001)")
    g.add_argument("--ray-actors", type=int, help="scorer actors (default: one per GPU, or 1 on CPU-only clusters)")
    return p


def parse_styles(items: list[str]) -> tuple[tuple[float, str], ...]:
    """``TIME=STYLE`` items (from --style-at or a manifest's styles column, ';'-separated) to sorted pairs."""
    changes = []
    for item in items:
        time_text, sep, text = item.partition("=")
        if not sep or not text.strip():
            raise BadParameterError(f"style change {item!r} must be TIME=STYLE, e.g. 0:45=tense strings")
        changes.append((parse_time(time_text), text.strip()))
    return tuple(sorted(changes))


def options_from_args(args: argparse.Namespace) -> ScoreOptions:
    """Map flags to options, explicitly, one field at a time; a bad value is named by its flag."""
    if args.take is not None and args.takes is not None:
        raise BadParameterError(f"--take {args.take} makes that take alone and --takes {args.takes} takes 1 to "
                                f"{args.takes}: give one of them")
    try:
        melody = MelodyOptions(source="file", file=args.melody_file) if args.melody_file else MelodyOptions(source=args.melody)
        generation = GenerationOptions(window_s=args.window, stride_s=default_stride(args.window, args.stride),
                                       guidance_scale=args.guidance, temperature=args.temperature, top_k=args.top_k,
                                       top_p=args.top_p, seed=args.seed, independent_windows=args.independent_windows,
                                       batch_size=args.batch_size)
        mixing = MixOptions(mode=args.mix, depth_db=args.duck_depth, music_level_db=args.music_level,
                            target_lufs=-23.0 if args.broadcast else args.loudness, true_peak_dbtp=args.true_peak,
                            max_limiting_db=args.max_limiting,
                            fade_in_s=args.fade_in, fade_out_s=args.fade_out, output_layout=args.output_layout)
        audio_codec, audio_bitrate = parse_audio_codec(args.audio_codec)
        return ScoreOptions(style=args.style, styles_at=parse_styles(args.style_at), follow_cuts=args.follow_cuts,
                            melody=melody, generation=generation, mix=mixing,
                            keep_original_audio=args.keep_original_audio, takes=args.takes or ScoreOptions.takes,
                            take=args.take, audio_codec=audio_codec, audio_bitrate=audio_bitrate)
    except BadParameterError as error:
        raise error.named(FLAGS) from None


def default_stride(window_s, stride_s: float | None) -> float:
    """``--stride`` as given, else the default (18 s), or for windows up to that long the default's share
    of the default window (0.6 x --window), so that ``--window 16`` alone works."""
    d = GenerationOptions()
    if stride_s is not None:
        return stride_s
    if isinstance(window_s, (int, float)) and 0 < window_s <= d.stride_s:
        return window_s * d.stride_s / d.window_s
    return d.stride_s


def _row_options(row: dict, base: ScoreOptions) -> tuple[dict, list[str]]:
    """The option fields a manifest row sets (field -> value), and what is wrong with its cells, one item each."""
    fields, problems = {}, []
    cells = {"seed": int, "guidance": float, "takes": int}
    for column, field_name in (("seed", "seed"), ("guidance", "guidance_scale"), ("takes", "takes")):
        if row.get(column):
            try:
                fields[field_name] = cells[column](row[column])
            except ValueError:
                problems.append(f"{column} {row[column]!r} must be {'an integer' if cells[column] is int else 'a number'}")
    if row.get("style"):
        fields["style"] = row["style"]
    if row.get("melody"):
        fields["source"] = row["melody"]
    if row.get("styles"):
        try:
            fields["styles_at"] = parse_styles(row["styles"].split(";"))
        except BadParameterError as error:
            problems.append(f"styles: {error}")
    if "takes" in fields and base.take is not None:
        problems.append(f"takes {fields['takes']} and --take {base.take}: give one of them (--take makes that take "
                        "alone, takes makes takes 1 to N)")
    return fields, problems


def _with_fields(base: ScoreOptions, fields: dict) -> ScoreOptions:
    """``base`` with a manifest row's fields (see :func:`_row_options`); raises for a bad value or combination."""
    generation = {name: fields[name] for name in ("seed", "guidance_scale") if name in fields}
    return dataclasses.replace(
        base, **{name: fields[name] for name in ("style", "styles_at", "takes") if name in fields},
        generation=dataclasses.replace(base.generation, **generation),
        melody=MelodyOptions(source=fields["source"]) if "source" in fields else base.melody)


def row_request(manifest: Path, line: int, row: dict, extra: list | None, base: ScoreOptions):
    """The clip request of one manifest row: a refused request (its reason in ``refused``) when a cell is bad."""
    from .plan import ClipRequest

    path = manifest.parent / row["path"] if row.get("path") else manifest
    output = manifest.parent / row["output"] if row.get("output") else None
    if extra:  # the cells after a stray comma are in the wrong columns: none of them is read
        columns = ",".join(name for name in row)
        refused = BadParameterError(f"{manifest}: row {line}: {len(row) + len(extra)} fields for the {len(row)} columns "
                                    f"{columns}: quote a style that holds a comma, as in \"warm, ambient\"")
        return ClipRequest(path, output, base, refused=refused)
    problems = [] if row.get("path") else ["no path"]
    fields, cell_problems = _row_options(row, base)
    problems += cell_problems
    for name, value in fields.items():  # each cell alone, so that every bad one is named
        try:
            _with_fields(base, {name: value})
        except BadParameterError as error:
            problems.append(str(error.named(COLUMNS)))
    options = base
    if not problems:
        try:
            options = _with_fields(base, fields)
        except BadParameterError as error:
            problems.append(str(error.named({**FLAGS, **COLUMNS})))
    refused = BadParameterError(f"{manifest}: row {line}: {'; '.join(problems)}") if problems else None
    return ClipRequest(path, output, options, refused=refused)


def read_manifest(path: str, base: ScoreOptions):
    """Clip requests from a CSV manifest (UTF-8, with or without BOM, fields quoted as spreadsheets write them);
    relative paths are relative to its folder. A row with bad cells is a refused request (the clip fails
    with every reason at once); the other rows are scored."""
    manifest = Path(path)
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, restkey="\0extra")
            rows = list(reader)
            header = set(reader.fieldnames or ())
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise BadParameterError(f"{manifest}: cannot read manifest ({error})") from error
    if not {"path", "style"} <= header:
        raise BadParameterError(f"{manifest}: header must include path,style (found {','.join(sorted(header)) or 'nothing'})")
    if header - MANIFEST_COLUMNS:
        raise BadParameterError(f"{manifest}: unknown columns {', '.join(sorted(header - MANIFEST_COLUMNS))}")
    return [row_request(manifest, reader_line, row, row.pop("\0extra", None), base)
            for reader_line, row in enumerate(rows, start=2)]


def clip_requests(args: argparse.Namespace, options: ScoreOptions):
    from .plan import ClipRequest

    requests = [ClipRequest(Path(p), None, options) for p in args.inputs]
    if args.manifest:
        requests += read_manifest(args.manifest, options)
    if not requests:
        raise BadParameterError("no input: give FILEs or --manifest")
    if args.output and args.out_dir:
        raise BadParameterError("-o/--output and --out-dir exclude each other: -o names one output, --out-dir a folder")
    if args.output:
        if len(requests) != 1:
            raise BadParameterError(f"-o/--output takes one input, got {len(requests)}; use --out-dir")
        return [dataclasses.replace(requests[0], output=Path(args.output))]
    if args.out_dir:
        folder = Path(args.out_dir)
        if folder.exists() and not folder.is_dir():
            raise BadParameterError(f"--out-dir {folder}: is a file, not a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BadParameterError(f"--out-dir {folder}: cannot make the folder ({error.strerror})") from None
        return [dataclasses.replace(r, out_dir=folder) for r in requests]
    return requests


def check_ray(args: argparse.Namespace) -> None:
    """--ray needs the optional extra: fail at once, with the pip command, when it is missing."""
    if (args.ray or args.ray_address) and importlib.util.find_spec("ray") is None:
        raise BadParameterError("--ray needs ray, which is not installed: pip install 'scoretrack[ray]'")


MELODY_WORDS = {"video": "the input's own sound", "harmonic": "the harmonic part of the input's sound",
                "file": "--melody-file"}


def shown(text) -> str:
    """A name as one line of a table: newlines, tabs and other control characters escaped."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode() for char in str(text))


def text_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: wide (CJK) characters two, combining marks none."""
    return sum(0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1
               for char in text)


def pad(text: str, width: int) -> str:
    return text + " " * max(0, width - text_width(text))


def print_summary(results) -> None:
    """A table of every clip on stderr, with the side files each wrote and the melody reference used."""
    names = [shown(r.input) for r in results]
    width = max(text_width(name) for name in names)
    print(f"\n{pad('clip', width)}  status   seconds  LUFS    output / error", file=sys.stderr)
    for r, name in zip(results, names):
        seconds = f"{r.duration_s:7.2f}" if r.duration_s is not None else "      -"
        lufs = f"{r.loudness_lufs:6.1f}" if r.loudness_lufs is not None else "     -"
        print(f"{pad(name, width)}  {r.status:<7}  {seconds}  {lufs}  {shown(r.output or r.error)}", file=sys.stderr)
        if r.side and r.status != "failed":
            print(f"{pad('', width)}  {'':7}  {'':7}  {'':6}  also: {', '.join(shown(p.name) for p in r.side.values())}",
                  file=sys.stderr)
        if len(r.takes) > 1 or (r.takes and r.takes[0].number != 1):
            for take in r.takes:
                lufs = f"{take.loudness_lufs:6.1f}" if take.loudness_lufs is not None else "     -"
                print(f"{pad('', width)}  {take.status:<7}  {'':7}  {lufs}  take {take.number} (seed {take.seed}): "
                      f"{shown(take.output)}", file=sys.stderr)
    sources = sorted({MELODY_WORDS[r.melody] for r in results if r.melody in MELODY_WORDS})
    if sources:
        print(f"melody reference: {', '.join(sources)}", file=sys.stderr)
    for r in results:
        for note in r.notes:
            print(f"note: {shown(r.input)}: {note}", file=sys.stderr)


class LogProgress:
    """Progress for a log, when stderr is not a terminal (CI, cron, ``2> run.log``): one line per
    finished clip of a batch, and one per tenth of the run's decode steps, with the time left."""

    def __init__(self, clips: int):
        self.clips, self.finished = clips, 0
        self.total = self.done = self.tenths = 0
        self.started = time.monotonic()

    def reset(self, total: int) -> None:
        """The decode steps ahead (once the model is loaded): the clock starts here."""
        self.total, self.done, self.tenths, self.started = total, 0, 0, time.monotonic()

    def step(self, count: int) -> None:
        self.done += count
        tenths = min(10, self.done * 10 // self.total) if self.total else 0
        if tenths > self.tenths:
            self.tenths = tenths
            elapsed = time.monotonic() - self.started
            left = elapsed * (self.total - self.done) / self.done
            print(f"scoretrack: generating {10 * tenths}% ({self.done}/{self.total} steps, {elapsed:.0f} s, "
                  f"about {left:.0f} s left)", file=sys.stderr, flush=True)

    def clip(self, result) -> None:
        self.finished += 1
        if self.clips > 1:
            outcome = result.error if result.status == "failed" else result.output
            print(f"scoretrack: clip {self.finished}/{self.clips} {result.status}: {result.input}: {outcome}",
                  file=sys.stderr, flush=True)


def make_executor(args: argparse.Namespace, status):
    """The local loop (default) or a Ray executor for --ray / --ray-address."""
    from .executors import LocalExecutor
    from .pipeline import Scorer

    if args.ray or args.ray_address:
        from .ray_executor import RayExecutor

        return RayExecutor(model=args.model, device=args.device, dtype=args.dtype, quantize=args.quantize,
                           address=args.ray_address, actors=args.ray_actors, on_status=status)
    return LocalExecutor(lambda: Scorer(args.model, device=args.device, dtype=args.dtype, quantize=args.quantize,
                                        on_status=status))


def json_report(paths, results: dict, usage: ScoretrackError | None = None) -> str:
    """Every clip's result, in order; clips without one are ``not started``, or ``failed`` with the usage
    error that stopped the run before any clip (``usage``)."""
    from .results import ScoreResult

    def missing(index: int, path) -> ScoreResult:
        if usage is not None:
            return ScoreResult.failure(index, path, usage)
        return ScoreResult(input=Path(path), output=None, status="not started", index=index)

    return json.dumps([(results.get(index) or missing(index, path)).to_json() for index, path in enumerate(paths)],
                      indent=1)


def write_addon(args: argparse.Namespace) -> int:
    """--blender-addon: the add-on's zip, and nothing scored."""
    if args.inputs or args.manifest:
        raise BadParameterError("--blender-addon writes the Blender add-on and scores nothing: give it without "
                                "FILEs or --manifest")
    from .addon import write_blender_addon

    path = write_blender_addon(args.blender_addon, overwrite=args.force)
    print(f"scoretrack: wrote {path}: in Blender, Edit > Preferences > Add-ons > Install (4.2 and later: "
          "Install from Disk) and enable scoretrack", file=sys.stderr)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    requests, finished, usage = [], {}, None
    try:
        return _run(args, requests, finished)
    except ScoretrackError as error:
        usage = error
        raise
    finally:
        if args.json:  # whatever the exit: usage errors, a stop by a signal, an internal error
            print(json_report([r.path for r in requests] or args.inputs, finished, usage), flush=True)


def _run(args: argparse.Namespace, requests: list, finished: dict) -> int:
    """:func:`run`, filling ``requests`` once known and ``finished`` (index -> result) as clips finish."""
    if args.blender_addon:
        return write_addon(args)
    options = options_from_args(args)
    check_ray(args)
    requests += clip_requests(args, options)
    from .plan import SideOutputs

    side = SideOutputs(stems=args.stems, stem_format=args.stem_format, plot=args.plot, timelines=tuple(args.timeline),
                       timeline_rate=args.timeline_rate)
    side.validate()
    from tqdm import tqdm

    from . import model, pipeline

    family = model.model_family(args.model)  # from its config: a melody it cannot take stops here, before all else
    for request in requests if family is not None else ():
        request.options.for_model(family.takes_melody)
    model.check_model_source(args.model)
    if not (args.ray or args.ray_address):  # on a cluster the workers' devices count, not the driver's
        model.pick_device(args.device)  # a missing cuda/mps fails here, before any work
    single = len(requests) == 1
    interactive = sys.stderr.isatty()

    def status(line: str) -> None:
        print(f"scoretrack: {line}", file=sys.stderr)

    executor = make_executor(args, status)
    log = None if interactive else LogProgress(len(requests))
    with tqdm(total=len(requests), desc="clips", unit="clip", disable=not interactive, position=0) as clips, \
            tqdm(desc="generating", unit="step", disable=not interactive, position=1, leave=False) as steps:
        def on_clip(result) -> None:
            finished[result.index] = result
            raise_if_stopped()
            clips.update(1)
            if log is not None:
                log.clip(result)
            if result.status == "failed":
                if args.debug and result.exception is not None:
                    traceback.print_exception(result.exception, file=sys.stderr)
                if not single and interactive:
                    tqdm.write(f"scoretrack: {result.input}: {result.error}", file=sys.stderr)

        def on_step(count: int) -> None:
            raise_if_stopped()
            steps.update(count)
            if log is not None:
                log.step(count)

        def on_total(total: int) -> None:
            steps.reset(total=total)
            if log is not None:
                log.reset(total)

        results = pipeline.score_many(requests, model=args.model, executor=executor, overwrite=args.force, side=side,
                                      on_step=on_step, on_clip=on_clip, on_total=on_total, wait=args.wait,
                                      on_wait=status)
    raise_if_stopped()
    if single and results[0].status == "failed":
        print(f"scoretrack: error: {results[0].error}", file=sys.stderr)
        return EXIT_USAGE
    print_summary(results)
    if args.review:
        from . import review

        for folder in sorted({r.output.parent for r in results if r.output is not None}):
            status(f"review page: {review.write_review(folder)}")
    return EXIT_FAILED if any(r.status == "failed" for r in results) else EXIT_OK


def quiet_libraries() -> None:
    """Libraries' deprecation noise stays hidden; scoretrack's own warnings print as one line."""
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module="scoretrack")
    warnings.showwarning = lambda message, *_: print(f"scoretrack: warning: {message}", file=sys.stderr)
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


NEGATIVE_STYLE = re.compile(r"^-[\d.:]+=")  # a negative --style-at time, which argparse takes for an option


def _joined_values(argv: list[str]) -> list[str]:
    """``--style-at -5=jazz`` as ``--style-at=-5=jazz``, so that its time is refused as a time."""
    joined, items = [], iter(argv)
    for item in items:
        if item == "--":
            return joined + [item, *items]
        following = next(items, None) if item == "--style-at" else None
        if following is not None and NEGATIVE_STYLE.match(following):
            joined.append(f"{item}={following}")
        else:
            joined += [item] if following is None else [item, following]
    return joined


def build_pick_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="scoretrack pick",
                description="Make the chosen take each clip's main output (NAME.scored.EXT); the other takes keep "
                            "theirs, every record stays true, the timelines and the review page are remade.")
    p.add_argument("picks", nargs="+", metavar="PICKS",
                   help="picks.json saved from review.html, or CLIP=TAKE pairs (CLIP: the main output, e.g. "
                        "scored/clip.scored.mp4=2)")
    p.add_argument("--json", action="store_true", help="print what each clip's pick did as JSON on stdout")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _failure(prog: str, error: Exception, *, debug: bool) -> int:
    """One line for ``error`` (the traceback with --debug): exit 2 for bad input, 1 for a defect."""
    if debug:
        traceback.print_exc()
    if isinstance(error, ScoretrackError):
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{prog}: internal error: {type(error).__name__}: {error} (--debug shows where)", file=sys.stderr)
    return EXIT_FAILED


def pick_main(argv: list[str]) -> int:
    """``scoretrack pick PICKS...``: exit 0 when every clip was picked, 2 on a bad pick (nothing changed)."""
    args = build_pick_parser().parse_args(argv)
    quiet_libraries()
    from . import pick

    try:
        results = pick.pick_takes(pick.parse_picks(args.picks), on_status=lambda line: print(f"scoretrack: {line}",
                                                                                               file=sys.stderr))
    except KeyboardInterrupt:
        print("scoretrack pick: interrupted; each clip is picked or as it was (the next run finishes a clip "
              "it stopped in)", file=sys.stderr)
        return 130
    except Exception as error:
        return _failure("scoretrack pick", error, debug=args.debug)
    if args.json:
        print(json.dumps([result.to_json() for result in results], indent=1))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["pick"]:  # the subcommand; a file named pick goes after -- (scoretrack -- pick) or as ./pick
        return pick_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(_joined_values(argv))
    logger = logging.getLogger("scoretrack")
    level = logger.level
    if args.debug:  # the libraries' known-harmless load messages show too (scoretrack.model.quiet_loading)
        logger.setLevel(logging.DEBUG)
    else:
        quiet_libraries()
    _received.clear()
    previous = {signum: signal.signal(signum, _raise_interrupted) for signum in STOP_SIGNALS}
    previous_hook, sys.unraisablehook = sys.unraisablehook, _unraisable
    try:
        return run(args)
    except KeyboardInterrupt:
        print("scoretrack: interrupted; no partial output was left", file=sys.stderr)
        return 130
    except Interrupted as stop:
        print(f"scoretrack: stopped by {stop}; no partial output was left", file=sys.stderr)
        return stop.exit_code
    except Exception as error:
        return _failure("scoretrack", error, debug=args.debug)
    finally:
        logger.setLevel(level)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = previous_hook


if __name__ == "__main__":
    sys.exit(main())
