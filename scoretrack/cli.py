"""``scoretrack VIDEO... --style TEXT``: a thin shell over :class:`scoretrack.Scorer`.

Exit codes: 0 every clip scored (or skipped as already done), 1 some clip failed, 2 bad usage or an
unreadable single input. Errors are one line on stderr; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import traceback
import warnings
from pathlib import Path

from tqdm import tqdm

from . import generate, media
from .errors import BadParameterError, ScoretrackError
from .generate import GenerationOptions
from .mix import MIX_MODES, MixOptions
from .pipeline import MelodyOptions, ScoreOptions, ScoreResult, Scorer, default_output

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MANIFEST_COLUMNS = {"path", "style", "seed", "output", "melody", "guidance"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scoretrack",
        description="Score videos with MusicGen-melody: music of the exact length, ducked under speech, "
                    "muxed without re-encoding the picture. A file name starting with '-' goes after '--'.",
    )
    p.add_argument("videos", nargs="*", metavar="VIDEO", help="video files to score")
    p.add_argument("--style", default=ScoreOptions.style, help="text description of the music (default: %(default)r)")
    p.add_argument("-o", "--output", help="output file (one input only); default NAME.scored.EXT beside it")
    p.add_argument("--out-dir", help="folder for the outputs of many inputs")
    p.add_argument("--manifest", help="CSV with header path,style and optional seed,output,melody,guidance columns")
    g = p.add_argument_group("model")
    g.add_argument("--model", default=generate.DEFAULT_MODEL, help="hub id or local folder (default: %(default)s)")
    g.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:1, mps")
    g.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                   help="auto: float32 on CPU, bfloat16/float16 on GPU")
    g = p.add_argument_group("generation")
    d = GenerationOptions()
    g.add_argument("--seed", type=int, default=d.seed, help="random seed; same seed, same music (default: %(default)s)")
    g.add_argument("--guidance", type=float, default=d.guidance_scale, help="classifier-free guidance scale (default: %(default)s)")
    g.add_argument("--temperature", type=float, default=d.temperature, help="sampling temperature (default: %(default)s)")
    g.add_argument("--top-k", type=int, default=d.top_k, help="top-k sampling (default: %(default)s)")
    g.add_argument("--window", type=float, default=d.window_s, help="window length in seconds, at most 30 (default: %(default)s)")
    g.add_argument("--stride", type=float, default=d.stride_s, help="window advance in seconds (default: %(default)s)")
    g.add_argument("--independent-windows", action="store_true",
                   help="generate all windows at once without continuation (faster on GPU, less continuous)")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="rows per generate() call (default: %(default)s)")
    g = p.add_argument_group("melody")
    g.add_argument("--melody", default="video", choices=["video", "harmonic", "none"],
                   help="melody reference: the video's audio, its harmonic part, or none (text only)")
    g.add_argument("--melody-file", help="take the melody from this audio file instead")
    g = p.add_argument_group("mixing")
    m = MixOptions()
    g.add_argument("--mix", default=m.mode, choices=MIX_MODES,
                   help="mix: original + ducked music; replace: music alone; music: ducked music alone")
    g.add_argument("--duck-depth", type=float, default=m.depth_db, help="music gain under speech, dB (default: %(default)s)")
    g.add_argument("--music-level", type=float, default=m.music_level_db,
                   help="music loudness relative to the original audio, dB (default: %(default)s)")
    g.add_argument("--loudness", type=float, default=m.target_lufs, help="target integrated loudness, LUFS (default: %(default)s)")
    g.add_argument("--broadcast", action="store_true", help="broadcast loudness: -23 LUFS")
    g.add_argument("--fade-in", type=float, default=m.fade_in_s, help="music fade-in, seconds (default: %(default)s)")
    g.add_argument("--fade-out", type=float, default=m.fade_out_s, help="music fade-out, seconds (default: %(default)s)")
    g.add_argument("--keep-original-audio", action="store_true", help="keep the original audio as a second, non-default track")
    g = p.add_argument_group("outputs")
    g.add_argument("--force", action="store_true", help="redo clips whose output exists")
    g.add_argument("--stems", action="store_true", help="also write NAME.scored.music.wav (ducked music, 48 kHz)")
    g.add_argument("--plot", action="store_true", help="also write NAME.scored.png (waveform, speech, gain, seams)")
    g.add_argument("--json", action="store_true", help="print a JSON array of per-clip results on stdout")
    g.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def options_from_args(args: argparse.Namespace) -> ScoreOptions:
    """Map flags to options, explicitly, one field at a time."""
    melody = MelodyOptions(source="file", file=args.melody_file) if args.melody_file else MelodyOptions(source=args.melody)
    generation = GenerationOptions(window_s=args.window, stride_s=args.stride, guidance_scale=args.guidance,
                                   temperature=args.temperature, top_k=args.top_k, seed=args.seed,
                                   independent_windows=args.independent_windows, batch_size=args.batch_size)
    mixing = MixOptions(mode=args.mix, depth_db=args.duck_depth, music_level_db=args.music_level,
                        target_lufs=-23.0 if args.broadcast else args.loudness,
                        fade_in_s=args.fade_in, fade_out_s=args.fade_out)
    options = ScoreOptions(style=args.style, melody=melody, generation=generation, mix=mixing,
                           keep_original_audio=args.keep_original_audio)
    options.validate()
    return options


def read_manifest(path: str, base: ScoreOptions) -> list[tuple[Path, Path | None, ScoreOptions]]:
    """Jobs from a CSV manifest; relative paths are relative to the manifest's folder."""
    manifest = Path(path)
    try:
        with manifest.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
            header = set(rows[0]) if rows else set()
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise BadParameterError(f"{manifest}: cannot read manifest ({error})") from error
    if not {"path", "style"} <= header:
        raise BadParameterError(f"{manifest}: header must include path,style (found {','.join(sorted(header)) or 'nothing'})")
    if header - MANIFEST_COLUMNS:
        raise BadParameterError(f"{manifest}: unknown columns {', '.join(sorted(header - MANIFEST_COLUMNS))}")
    jobs = []
    for line, row in enumerate(rows, start=2):
        try:
            options = dataclasses.replace(base, style=row["style"] or base.style)
            if row.get("seed"):
                options = dataclasses.replace(options, generation=dataclasses.replace(options.generation, seed=int(row["seed"])))
            if row.get("guidance"):
                options = dataclasses.replace(options, generation=dataclasses.replace(options.generation, guidance_scale=float(row["guidance"])))
            if row.get("melody"):
                options = dataclasses.replace(options, melody=MelodyOptions(source=row["melody"]))
        except ValueError as error:
            raise BadParameterError(f"{manifest}:{line}: {error}") from error
        output = manifest.parent / row["output"] if row.get("output") else None
        jobs.append((manifest.parent / row["path"], output, options))
    return jobs


def plan_jobs(args: argparse.Namespace, options: ScoreOptions) -> list[tuple[Path, Path | None, ScoreOptions]]:
    jobs = [(Path(v), None, options) for v in args.videos]
    if args.manifest:
        jobs += read_manifest(args.manifest, options)
    if not jobs:
        raise BadParameterError("no input: give VIDEO files or --manifest")
    if args.output:
        if len(jobs) != 1:
            raise BadParameterError(f"-o/--output takes one input, got {len(jobs)}; use --out-dir")
        jobs = [(jobs[0][0], Path(args.output), options)]
    elif args.out_dir:
        folder = Path(args.out_dir)
        if not folder.is_dir():
            raise BadParameterError(f"--out-dir {folder}: not a folder")
        jobs = [(path, out or folder / default_output(path).name, opts) for path, out, opts in jobs]
    return jobs


def print_summary(results: list[ScoreResult]) -> None:
    """A table of every clip on stderr."""
    width = max(len(str(r.input)) for r in results)
    print(f"\n{'clip':<{width}}  status   seconds  LUFS    output / error", file=sys.stderr)
    for r in results:
        seconds = f"{r.duration_s:7.2f}" if r.duration_s is not None else "      -"
        lufs = f"{r.loudness_lufs:6.1f}" if r.loudness_lufs is not None else "     -"
        print(f"{str(r.input):<{width}}  {r.status:<7}  {seconds}  {lufs}  {r.output or r.error}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    jobs = plan_jobs(args, options)
    if len(jobs) == 1:
        media.probe(jobs[0][0])  # a bad single input is a usage error: fail before loading the model
    scorer = Scorer(args.model, device=args.device, dtype=args.dtype)
    interactive = sys.stderr.isatty()
    with tqdm(total=len(jobs), desc="clips", unit="clip", disable=not interactive, position=0) as clips, \
            tqdm(desc="generating", unit="step", disable=not interactive, position=1, leave=False) as steps:
        def on_clip(result: ScoreResult) -> None:
            clips.update(1)
            if result.status == "failed" and not interactive:
                print(f"scoretrack: {result.input}: {result.error}", file=sys.stderr)

        def on_total(total: int) -> None:
            steps.reset(total=total)

        results = scorer.score_many(jobs, overwrite=args.force, stems=args.stems, plot=args.plot,
                                    on_step=steps.update, on_clip=on_clip, on_total=on_total)
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=1))
    print_summary(results)
    if len(results) == 1 and results[0].status == "failed":
        print(f"scoretrack: error: {results[0].error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_FAILED if any(r.status == "failed" for r in results) else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        # libraries' deprecation noise stays hidden; scoretrack's own warnings print as one line
        warnings.filterwarnings("ignore")
        warnings.filterwarnings("default", module="scoretrack")
        warnings.showwarning = lambda message, *_: print(f"scoretrack: warning: {message}", file=sys.stderr)
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    try:
        return run(args)
    except ScoretrackError as error:
        if args.debug:
            traceback.print_exc()
        print(f"scoretrack: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("scoretrack: interrupted; no partial output was left", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
