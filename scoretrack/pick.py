"""``scoretrack pick``: make the chosen take each clip's main output, never touching the music.

A clip's files are renamed so the chosen take holds ``NAME.scored.EXT`` (its stems and plot follow it)
and take 1 holds the chosen take's old name (:func:`scoretrack.plan.take_output`); every sidecar is
rewritten to name its take's files, so the take number stays tied to its seed: a rerun plans the
same names from the main output's sidecar and skips every clip, and ``--take N`` names the same
music. The timelines are remade by the scoring pipeline itself (they are out of date by their
recorded take order, so a run remakes them alone, without generating), then the review page.

Each clip's renames go through a journal written first (``.NAME.scoretrack-pick.json``): every file
is moved to a staging name, then to its new name, then the sidecars are written. A run that finds a
journal (a pick, or a scoring run, killed in the middle) finishes it first, so every clip is either
picked or as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from . import review
from .claims import Claims, OutputBusyError
from .errors import BadParameterError, ScoretrackError
from .media import atomic_output
from .options import GenerationOptions, MelodyOptions, MixOptions, ScoreOptions
from .results import ScoreResult
from .model import check_model_source
from .plan import ClipRequest, SideOutputs, same_file, sidecar_path, take_output
from .timelines import AUDIO_ONLY_RATE, TIMELINE_KINDS

JOURNAL_SUFFIX = ".scoretrack-pick.json"
STAGED_SUFFIX = ".scoretrack-pick"
KILL_AFTER_ENV = "SCORETRACK_PICK_KILL_AFTER"  # tests: SIGKILL this process after that many renames


@dataclass(frozen=True)
class Pick:
    """One clip's choice: the take that becomes its main ``output``."""

    output: Path  # the clip's main output, NAME.scored.EXT
    take: int

    def __post_init__(self):
        if isinstance(self.take, bool) or not isinstance(self.take, int) or self.take < 1:
            raise BadParameterError(f"{self.output}={self.take!r}: a take is a number from 1")


def parse_picks(items: Sequence[str]) -> list[Pick]:
    """Picks from the command line: one ``picks.json`` saved from the review page, or ``CLIP=TAKE`` pairs
    (the clip's main output, as a path)."""
    if len(items) == 1 and "=" not in items[0]:
        return read_picks(Path(items[0]))
    picks = []
    for item in items:
        clip, _, take = item.rpartition("=")
        if not clip or not take.isdigit():
            raise BadParameterError(f"{item}: give CLIP=TAKE (e.g. clip.scored.mp4=2) or one picks.json")
        picks.append(Pick(Path(clip), int(take)))
    return picks


def read_picks(path: Path) -> list[Pick]:
    """The picks a review page saved: ``{"folder": ..., "picks": {main output name: take}}``; names are in
    ``folder``, or beside the file when that folder is gone."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        folder = Path(data.get("folder") or path.parent)
        folder = folder if folder.is_dir() else path.parent
        return [Pick(folder / name, take) for name, take in data["picks"].items()]
    except OSError as error:
        raise BadParameterError(f"{path}: cannot read ({error.strerror})") from None
    except (ValueError, KeyError, AttributeError, TypeError):
        raise BadParameterError(f"{path}: not a picks.json saved from a review page "
                                '({"folder": ..., "picks": {"clip.scored.mp4": 2}})') from None


def options_from_settings(settings: dict) -> ScoreOptions:
    """The ScoreOptions a sidecar's settings record (:func:`scoretrack.review.settings_record`)."""
    o = settings["options"]
    return ScoreOptions(**{**o, "styles_at": tuple((time_s, text) for time_s, text in o["styles_at"]),
                           "melody": MelodyOptions(**o["melody"]), "generation": GenerationOptions(**o["generation"]),
                           "mix": MixOptions(**o["mix"])})


@dataclass(frozen=True)
class ClipPick:
    """A pick checked against the clip's files: what to rename and the sidecars to write."""

    pick: Pick
    was: int  # the take the main output held
    moves: tuple[tuple[str, str], ...]  # (from, to) file names in the clip's folder
    sidecars: dict  # file name -> record

    @property
    def folder(self) -> Path:
        return self.pick.output.parent


def plan_pick(pick: Pick) -> ClipPick:
    """Check ``pick`` against the clip's sidecars; name every rename and the sidecars after it.

    Raises
    ------
    BadParameterError
        The clip has no such take, its files are not a scored clip's or not all there, a file is in the
        way of a rename, or the pick could not be finished: the clip was made by a version whose
        settings this one plans otherwise, or its timelines could not be remade (:func:`_check_remakeable`).
    """
    main = pick.output
    takes = review.read_takes(main.parent).get(main.name)
    if not takes or not any(name == main.name for name, _ in takes.values()):
        raise BadParameterError(f"{main}: not a clip's main output with scoretrack's records beside it "
                                "(give NAME.scored.EXT of a run made with this version)")
    if pick.take not in takes:
        raise BadParameterError(f"{main}={pick.take}: the clip has no take {pick.take} "
                                f"(its takes: {', '.join(map(str, sorted(takes)))})")
    for number, (name, record) in takes.items():
        if not _plans_again(record, number):
            raise BadParameterError(f"{main.parent / name}: made by another version of scoretrack, whose settings this "
                                    f"one cannot plan again; score the clip again (--force), then pick")
    was = next(number for number, (name, _) in takes.items() if name == main.name)
    timelines = {kind: item for kind, item in takes[was][1].get("side", {}).items() if kind in TIMELINE_KINDS}
    if timelines:
        _check_remakeable(main, takes[was][1], timelines)
    moves, sidecars = [], {}
    for number, (name, record) in takes.items():
        new = take_output(main, number, picked=pick.take).name
        old_stem, new_stem = Path(name).stem, Path(new).stem
        side = {kind: {**item, "name": new_stem + item["name"][len(old_stem):]}
                for kind, item in record.get("side", {}).items() if kind not in TIMELINE_KINDS}
        if number == pick.take:
            side.update(timelines)  # beside the main output still, remade by the run that follows
        moves += [(a, b) for a, b in [(name, new), (sidecar_path(Path(name)).name, sidecar_path(Path(new)).name),
                                      *((item["name"], side[kind]["name"]) for kind, item in record.get("side", {}).items()
                                        if kind not in TIMELINE_KINDS)] if a != b]
        sidecars[sidecar_path(Path(new)).name] = {**record, "side": side}
    sources = {a for a, _ in moves}
    for name in sorted(sources):
        if not (main.parent / name).is_file():
            raise BadParameterError(f"{main.parent / name}: missing; a pick renames every file of the clip's takes "
                                    "(score the clip again to make it)")
    for _, name in moves:
        if name not in sources and (main.parent / name).exists():
            raise BadParameterError(f"{main.parent / name}: is in the way of a take's file; move it away, then pick")
    return ClipPick(pick=pick, was=was, moves=tuple(moves), sidecars=sidecars if moves else {})


def _plans_again(record: dict, number: int) -> bool:
    """Whether this version plans ``record``'s settings to the fingerprint take ``number`` was made with."""
    settings = record.get("settings")
    try:
        return options_from_settings(settings).fingerprint(settings["model"], number) == record.get("fingerprint")
    except (TypeError, KeyError, ValueError, BadParameterError):
        return False


def _check_remakeable(main: Path, record: dict, timelines: dict) -> None:
    """Refuse a pick whose timelines the run after it could not remake: the input gone, a timeline
    changed since scoretrack wrote it (an editor saved it in place), or the model not to be found."""
    source = Path(record.get("input", {}).get("path", ""))
    if not source.is_file():
        raise BadParameterError(f"{main}: its input {source} is gone (moved?); a pick remakes the clip's timelines "
                                "from it")
    for kind, item in timelines.items():
        if not same_file(item, main.parent / item["name"]):
            raise BadParameterError(f"{main.parent / item['name']}: changed since scoretrack wrote it (saved in an "
                                    "editor?); a pick remakes it: move it away to keep it, then pick")
    try:
        check_model_source(record["settings"]["model"])
    except ScoretrackError as error:
        raise BadParameterError(f"{main}: its timelines are remade with the model it was made with: {error}") from None


def journal_path(output: Path) -> Path:
    return output.with_name(f".{output.name}{JOURNAL_SUFFIX}")


def _staged(path: Path) -> Path:
    return path.with_name(f".{path.name}{STAGED_SUFFIX}")


_renames = [0]


def _renamed() -> None:
    """Count a rename; the tests' hook kills the process after the count they name."""
    _renames[0] += 1
    if os.environ.get(KILL_AFTER_ENV) == str(_renames[0]):
        os.kill(os.getpid(), signal.SIGKILL)


def _write_json(path: Path, data: dict) -> None:
    with atomic_output(path, overwrite=True) as temp:
        temp.write_text(json.dumps(data, indent=1), encoding="utf-8")


def run_journal(path: Path) -> None:
    """Carry out (or finish) a clip's journal: stage every file, place each under its new name, write
    the sidecars, remove the journal. Each step is done once however often this is run."""
    journal = json.loads(path.read_text(encoding="utf-8"))
    folder = path.parent
    if journal["phase"] == "stage":
        for src, dst in journal["moves"]:
            if _staged(folder / dst).exists():
                continue
            if not (folder / src).is_file():  # gone since the pick was planned: undo, the clip as it was
                _unstage(folder, journal["moves"])
                path.unlink()
                raise ScoretrackError(f"{folder / src}: gone while the pick renamed the clip's files; they are as "
                                      "they were")
            os.rename(folder / src, _staged(folder / dst))
            _renamed()
        journal["phase"] = "place"
        _write_json(path, journal)
    for _, dst in journal["moves"]:
        if _staged(folder / dst).exists():
            os.rename(_staged(folder / dst), folder / dst)
            _renamed()
    for name, record in journal["sidecars"].items():
        _write_json(folder / name, record)
    path.unlink()


def _unstage(folder: Path, moves) -> None:
    """Put every staged file of ``moves`` back under its old name."""
    for src, dst in moves:
        if _staged(folder / dst).exists():
            os.rename(_staged(folder / dst), folder / src)


def recover(folders) -> None:
    """Finish every pick a killed run left in ``folders`` (its journal is still there); a pick still
    running (it holds the clip's claim) is left to finish its own."""
    for folder in {Path(f) for f in folders}:
        for journal in sorted(folder.glob(f".*{JOURNAL_SUFFIX}")) if folder.is_dir() else ():
            with Claims() as claims:
                try:
                    claims.claim(0, [folder / journal.name[1:-len(JOURNAL_SUFFIX)]])
                except OutputBusyError:
                    continue
                if journal.exists():
                    with contextlib.suppress(ScoretrackError):  # undone: the clip is as it was, its journal gone
                        run_journal(journal)


def apply_pick(clip: ClipPick) -> None:
    """Rename ``clip``'s files through its journal (written first)."""
    if clip.moves:
        journal = journal_path(clip.pick.output)
        _write_json(journal, {"phase": "stage", "moves": [list(m) for m in clip.moves], "sidecars": clip.sidecars})
        run_journal(journal)


def _claimed_files(clip: ClipPick) -> list[Path]:
    names = {name for move in clip.moves for name in move} | {clip.pick.output.name}
    return [clip.folder / name for name in sorted(names)]


@dataclass(frozen=True)
class PickResult:
    """What picking did to one clip."""

    output: Path
    take: int
    was: int

    def to_json(self) -> dict:
        return {"output": str(self.output), "take": self.take, "was": self.was}


def pick_takes(picks: Sequence[Pick], *, on_status: Callable[[str], None] | None = None) -> list[PickResult]:
    """Make each pick's take its clip's main output, then remake the clips' timelines and review pages.

    Every pick is checked before any file moves; each clip is then renamed alone (claimed like a
    scoring run claims it), so a stop leaves each clip picked or as it was.

    Raises
    ------
    BadParameterError
        A pick that names no clip or no take of it, or two picks of one clip (nothing was changed).
    """
    seen = {}
    for pick in picks:
        key = pick.output.resolve()
        if key in seen and seen[key] != pick.take:
            raise BadParameterError(f"{pick.output}: picked twice (takes {seen[key]} and {pick.take}); pick one")
        seen[key] = pick.take
    picks = list({pick.output.resolve(): pick for pick in reversed(picks)}.values())[::-1]  # one per clip, in order
    recover(pick.output.parent for pick in picks)
    planned = [plan_pick(pick) for pick in picks]
    results = []
    for index, clip in enumerate(planned):
        with Claims() as claims:
            claims.claim(index, _claimed_files(clip))
            clip = plan_pick(clip.pick)  # again, under the claim
            apply_pick(clip)
        results.append(PickResult(output=clip.pick.output, take=clip.pick.take, was=clip.was))
        if on_status is not None:
            change = "already" if clip.was == clip.pick.take else f"now (was take {clip.was})"
            on_status(f"{clip.pick.output}: take {clip.pick.take} is {change} the main output")
    remake_views([clip.pick.output for clip in planned], on_status=on_status)
    return results


def remake_views(outputs: Sequence[Path], *, on_status: Callable[[str], None] | None = None) -> None:
    """Remake what shows a clip's takes after a pick: its timelines, where it has any, by a scoring run
    that finds the music done and the timelines out of date (it loads the model for their seams, but
    generates nothing), and each folder's review page where there is one."""
    from .pipeline import score_many

    groups: dict[tuple, list[ClipRequest]] = {}
    for output in outputs:
        takes = review.read_takes(output.parent)[output.name]
        record = next(record for name, record in takes.values() if name == output.name)
        settings, side = record["settings"], record.get("side", {})
        request = ClipRequest(Path(record["input"]["path"]), output, options_from_settings(settings))
        outputs_asked = SideOutputs(stems="music" in side, stem_format=settings["stem_format"], plot="plot" in side,
                                    timelines=tuple(kind for kind in TIMELINE_KINDS if kind in side),
                                    timeline_rate=AUDIO_ONLY_RATE if record["review"]["video"] else settings["timeline_rate"])
        if outputs_asked.timelines:  # nothing else shows the take order (the model is loaded only for them)
            groups.setdefault((settings["model"], outputs_asked), []).append(request)
    for (model, side), requests in groups.items():
        try:
            results = score_many(requests, model=model, side=side)
        except ScoretrackError as error:
            results = [ScoreResult.failure(0, request.path, error) for request in requests]
        for result in results:
            if result.status == "failed":
                raise ScoretrackError(f"{result.input}: picked, but its timelines were not remade: {result.error} "
                                      "(run the pick again)")
    for folder in {output.parent for output in outputs}:
        if (folder / review.PAGE_NAME).exists():
            path = review.write_review(folder)
            if on_status is not None:
                on_status(f"review page: {path}")
