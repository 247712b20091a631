"""Writers at the edge: the scored output (video mux or audio file), stems, plot, timelines and the sidecar.

Each writes to a temporary name beside its target and renames it into place
(:func:`scoretrack.media.atomic_output`), streaming the soundtrack block by block so an hour-long
clip is never held whole at 48 kHz.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import media
from . import mix as mixing
from .media import atomic_output
from .errors import ScoretrackError
from .mix import ENVELOPE_HOP_S
from .plan import STEM_FORMATS, Job, Take
from .timelines import TIMELINE_KINDS, build_timeline, render_timeline

ENVELOPE_RATE = round(1 / ENVELOPE_HOP_S)  # points per second of the ducking envelope
PLOT_FONT = "DejaVu Sans"  # matplotlib's own font: Latin, Greek, Cyrillic, no CJK
DELIVERY_TRIES = 3  # encodes of a lossy output measured at most (deliverable)
DELIVERY_MARGIN_DB = 0.05  # how much further than the encoder's overshoot the mix's ceiling is lowered


def write_audio_files(paths: Sequence[Path], blocks: Iterable[Sequence[np.ndarray]], *, sample_rate: int,
                      file_format: str, subtype: str, overwrite: bool = True) -> list[Path]:
    """Write audio files with soundfile, atomically, in one pass: each item of ``blocks`` holds one
    float ``(channels, n)`` block per path, in order."""
    import soundfile

    with contextlib.ExitStack() as stack:
        outs = []
        path = paths[0]
        try:
            for parts in blocks:
                if not outs:
                    for path, part in zip(paths, parts):
                        temp = stack.enter_context(atomic_output(path, overwrite=overwrite))
                        outs.append(stack.enter_context(soundfile.SoundFile(
                            str(temp), "w", samplerate=sample_rate, channels=part.shape[0], format=file_format,
                            subtype=subtype)))
                for path, out, part in zip(paths, outs, parts):
                    out.write(np.ascontiguousarray(part.T))
            for path, out in zip(paths, outs):
                out.close()  # before atomic_output renames the file into place
        except (OSError, soundfile.SoundFileRuntimeError) as error:  # libsndfile says "System error." alone
            raise ScoretrackError(f"{path}: cannot write ({media.write_cause(error, path.parent)})") from error
    return list(paths)


def _layout(job: Job, track) -> str:
    """The layout the take's soundtrack is written in: the planned one, unless a mono source was planned
    before the model's music was known to be stereo (then it is scored in stereo)."""
    channels = len(track.channel_names)
    return job.layout if len(media.channel_names(job.layout)) == channels else media.DEFAULT_LAYOUTS[channels]


def deliverable(job: Job, track, *, sample_rate: int):
    """``track`` (a Soundtrack) as the job's output delivers it, with that file's loudness and true peak.

    A lossless output is the mix itself. A lossy one is encoded and decoded, and measured; while its
    true peak is over the ceiling (the encoder's ringing adds a few tenths of a dB), the mix is made
    again with its ceiling lowered by the overshoot (:func:`scoretrack.mix.with_ceiling`; the
    loudness target holds), at most :data:`DELIVERY_TRIES` encodes. The figures are those of the last
    encode, which :func:`write_output` then writes again, packet for packet."""
    if job.encoding is None or job.encoding.lossless:
        return track
    ceiling = job.options.mix.true_peak_dbtp
    mixed, aim, layout = track.mixed, ceiling, _layout(job, track)
    rate = media.encoded_rate(job.encoding.codec, sample_rate)
    for attempt in range(DELIVERY_TRIES):
        blocks = media.encoded_blocks((audio for audio, _, _ in mixed.blocks()), sample_rate=sample_rate,
                                      layout=layout, encoding=job.encoding)
        lufs, peak = mixing.levels(blocks, sample_rate=rate, samples=media.sample_count(mixed.samples / sample_rate, rate),
                                   channel_names=mixed.channel_names)
        if peak <= ceiling or attempt == DELIVERY_TRIES - 1:
            break
        aim -= peak - ceiling + DELIVERY_MARGIN_DB
        mixed = mixing.with_ceiling(mixed, true_peak_dbtp=aim)
    return dataclasses.replace(track, mixed=dataclasses.replace(mixed, loudness_lufs=lufs, true_peak_dbtp=peak))


def write_output(job: Job, take: Take, track, *, sample_rate: int) -> Path:
    """A take's scored file: the video with its new soundtrack (picture copied), or the audio file in the
    format its extension names (an input's own by default)."""
    mix_blocks = (mixed for mixed, _, _ in track.blocks())
    layout = _layout(job, track)
    if job.info.is_video:
        return media.mux(job.info.path, mix_blocks, sample_rate=sample_rate, output=take.output,
                         layout=layout, keep_original_audio=job.options.keep_original_audio, overwrite=True,
                         info=job.info, encoding=job.encoding)
    return media.write_audio(mix_blocks, sample_rate=sample_rate, output=take.output, layout=layout, overwrite=True,
                             encoding=job.encoding)


def write_side_files(job: Job, take: Take, tracks: dict, original: np.ndarray | None, *, sample_rate: int,
                     timeline) -> dict[str, Path]:
    """Write the side files ``take.make`` names; return name -> path of those written.

    ``tracks`` maps take numbers to the Soundtracks made in this run: the stems are ``take``'s, the
    plot stacks them all. The timelines hold every take of the job by its dry stem (whose files must
    exist) with ``timeline``'s seams, cuts and ducking envelope (a Soundtrack of the clip, or
    :class:`TimelineBasis` when no take was generated). All or none: when one fails, those this call
    wrote are removed before the error goes on."""
    made: dict[str, Path] = {}
    wanted = [name for name in take.make if name != "output"]
    track = tracks.get(take.number)
    try:
        stems = [name for name in ("music", "music-dry") if name in wanted]
        if stems:
            made.update(write_stems(job, take, track, stems, sample_rate=sample_rate))
        if "plot" in wanted:
            made["plot"] = write_plot(take.side["plot"], original, list(tracks.values()), sample_rate=sample_rate,
                                      title=take.output.name, depth_db=job.options.mix.depth_db,
                                      styles_at=job.options.styles_at, take_numbers=list(tracks), this_take=take.number)
        kinds = [kind for kind in TIMELINE_KINDS if kind in wanted]
        if kinds:  # every take has a dry stem when timelines are asked for
            takes = [(t.number, t.side["music-dry"]) for t in job.timeline_takes()]
            for kind, document in timeline_documents(job, timeline, kinds, takes=takes).items():
                with atomic_output(take.side[kind], overwrite=True) as temp:
                    temp.write_bytes(document)
                made[kind] = take.side[kind]
    except BaseException:
        for path in made.values():
            path.unlink(missing_ok=True)
        raise
    return made


def write_stems(job: Job, take: Take, track, names: list[str], *, sample_rate: int) -> dict[str, Path]:
    """A take's ducked (``music``) and un-ducked (``music-dry``) music, one channel per channel the music
    has, both written in one pass over the rendered blocks."""
    _, file_format, subtype = STEM_FORMATS[job.stem_format]
    part = {"music": 2, "music-dry": 1}
    paths = write_audio_files([take.side[name] for name in names],
                              ([parts[part[name]] for name in names] for parts in track.blocks()),
                              sample_rate=sample_rate, file_format=file_format, subtype=subtype)
    return dict(zip(names, paths))


@dataclass(frozen=True)
class TimelineBasis:
    """What a clip's timelines take from its scoring, known without generating: the window seams and
    picture cuts (seconds) and the ducking envelope (linear gain every ``ENVELOPE_HOP_S``)."""

    seams: tuple[float, ...]
    cuts: tuple[float, ...]
    envelope: np.ndarray


def timeline_documents(job: Job, track, kinds: Sequence[str], *, takes: Sequence[tuple[int, Path]]) -> dict[str, bytes]:
    """The editing timelines ``kinds`` (of :data:`scoretrack.timelines.TIMELINE_KINDS`), rendered, none yet
    written: picture, original sound and the dry music ``takes`` (number, dry stem; the first plays, the
    others are muted) with ``track``'s ducking as volume keys (a Soundtrack or a :class:`TimelineBasis`);
    markers at the window seams, cuts and style changes."""
    markers = [(t, "seam") for t in track.seams] + [(t, "cut") for t in track.cuts]
    markers += [(t, f"style: {text}") for t, text in job.options.styles_at]
    facts = build_timeline(job.info, takes=takes, gain=track.envelope, gain_rate=ENVELOPE_RATE,
                           markers=sorted(markers), audio_only_rate=job.timeline_rate,
                           sound_muted=job.options.mix.mode != "mix")
    return {kind: render_timeline(facts, kind) for kind in kinds}


def write_sidecar(path: Path, record: dict) -> Path:
    """Record how an output was made (settings, input and output identity, side files), so a rerun can resume."""
    with atomic_output(path, overwrite=True) as temp:
        temp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return path


PLOT_POINTS = 2000  # columns of the waveforms drawn (min and max of each), whatever the clip's length


def waveform_peaks(blocks: Iterable[np.ndarray], samples: int, *, points: int = PLOT_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest sample (over all channels) of each of ``points`` equal spans of a signal given
    as ``(channels, n)`` blocks in order, ``samples`` long in all: what a waveform display draws."""
    points = max(1, min(points, samples))
    low, high = np.zeros(points, np.float32), np.zeros(points, np.float32)
    position = 0
    for block in blocks:
        n = block.shape[1]
        if n:
            span = np.arange(position, position + n) * points // samples  # the column of each sample
            starts = np.flatnonzero(np.diff(span, prepend=-1))
            columns = span[starts]
            np.minimum.at(low, columns, np.minimum.reduceat(block.min(axis=0), starts))
            np.maximum.at(high, columns, np.maximum.reduceat(block.max(axis=0), starts))
        position += n
    return low, high


@functools.lru_cache(maxsize=None)
def _font_codes(path: str) -> frozenset[int]:
    from matplotlib import ft2font

    try:
        return frozenset(ft2font.FT2Font(path).get_charmap())
    except (OSError, RuntimeError):
        return frozenset()


def plot_text(texts: Sequence[str]) -> tuple[list[str], list[str]]:
    """The font families that draw every character of ``texts`` (matplotlib's own, then installed fonts that
    have the characters it lacks, e.g. CJK file names), and the texts as they can be drawn: unchanged, or with
    the characters no installed font has escaped (``\u6620``), so a plot never shows boxes."""
    from matplotlib import font_manager

    fonts = {entry.name: entry.fname for entry in font_manager.fontManager.ttflist}
    families = [PLOT_FONT]
    covered = set(_font_codes(fonts[PLOT_FONT])) if PLOT_FONT in fonts else set()
    for char in sorted({char for text in texts for char in text if char.isprintable() and ord(char) not in covered}):
        if ord(char) in covered:
            continue
        for name, path in sorted(fonts.items()):
            if ord(char) in _font_codes(path):
                families.append(name)
                covered |= _font_codes(path)
                break
    shown = ["".join(char if ord(char) in covered else char.encode("ascii", "backslashreplace").decode()
                     for char in text) for text in texts]
    return families, shown


def music_loudness(track) -> float:
    """Integrated loudness (LUFS) of a take's music as mixed (ducked), measured block by block."""
    meter = None
    for _, _, ducked in track.blocks():
        if meter is None:
            meter = mixing.LoudnessMeter(sample_rate=track.sample_rate, samples=track.mixed.samples,
                                         weights=mixing.loudness_weights(mixing.layout_names(ducked.shape[0])))
        meter.add(ducked)
    return meter.lufs()


def plot_figure(original: np.ndarray | None, tracks: Sequence, *, sample_rate: int, title: str, depth_db: float,
                styles_at: Sequence[tuple[float, str]] = (), take_numbers: Sequence[int] | None = None,
                this_take: int | None = None):
    """The plot of one clip as a matplotlib Figure: its sound with the speech shaded, the ducking gain
    on an axis from ``depth_db`` to 0 dB, and one panel of music per take (``tracks``, one Soundtrack
    each, equal in length, numbered ``take_numbers``, default 1, 2...; ``this_take``'s panel is named
    the file's own), all on one time axis, with the window seams, picture cuts and style changes
    marked and labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = tracks[0]
    rows = 2 + len(tracks)
    fig, axes = plt.subplots(rows, 1, sharex=True, figsize=(12, 1.8 + 1.6 * rows), squeeze=False,
                             gridspec_kw={"height_ratios": [1.2, 0.8] + [1.0] * len(tracks)})
    sound, gain, *music = axes[:, 0]
    seconds = first.mixed.samples / first.sample_rate
    if original is not None:
        low, high = waveform_peaks([original], original.shape[1])
        sound.fill_between(np.linspace(0, original.shape[1] / sample_rate, low.size), low, high, color="0.35",
                           lw=0, label="original sound" if first.speech else "original sound (no speech found)")
    else:
        sound.text(0.5, 0.5, "no original sound", transform=sound.transAxes, ha="center", va="center", color="0.4")
    for i, (start, end) in enumerate(first.speech):
        sound.axvspan(start, end, color="tab:orange", alpha=0.25, lw=0, label=None if i else "speech (music ducks)")
    sound.set_ylabel("original")
    envelope_db = 20 * np.log10(np.maximum(first.envelope, 1e-6))
    gain.plot(np.arange(envelope_db.size) / ENVELOPE_RATE, envelope_db, color="tab:blue", label="music gain")
    gain.axhline(depth_db, color="tab:blue", ls=":", lw=0.8, label=f"duck depth ({depth_db:g} dB)")
    margin = max(1.0, 0.08 * abs(depth_db))
    gain.set_ylim(depth_db - margin, margin)  # the whole range the gain can take, speech or not
    gain.set_ylabel("gain (dB)")
    numbers = list(take_numbers) if take_numbers is not None else list(range(1, len(tracks) + 1))
    for take, axis, track in zip(numbers, music, tracks):
        for part, colour, label in ((1, "0.75", "music before ducking"), (2, "tab:blue", "music as mixed")):
            low, high = waveform_peaks((blocks[part] for blocks in track.blocks()), track.mixed.samples)
            axis.fill_between(np.linspace(0, seconds, low.size), low, high, color=colour, lw=0, label=label)
        name = f"take {take}{' (this file)' if take == this_take else ''}" if numbers != [1] else "music"
        axis.set_ylabel(f"{name}\n{music_loudness(track):.1f} LUFS")
    for axis, track in [(sound, first), (gain, first), *zip(music, tracks)]:
        def label(i: int, text: str) -> str | None:  # each kind of marker once, in the top panel's legend
            return text if axis is sound and i == 0 else None

        for i, seam in enumerate(track.seams):
            axis.axvline(seam, color="tab:red", ls="--", lw=0.8, label=label(i, "window seam"))
        for i, cut in enumerate(first.cuts):
            axis.axvline(cut, color="tab:green", ls=":", lw=0.8, label=label(i, "picture cut"))
        for i, (time_s, _) in enumerate(styles_at):
            axis.axvline(time_s, color="tab:purple", lw=1.2, label=label(i, "style change"))
        axis.legend(loc="upper right", fontsize="small", framealpha=0.8)
    families, [title, *styles] = plot_text([title, *(text for _, text in styles_at)])
    for (time_s, _), text in zip(styles_at, styles):
        sound.annotate(text, (time_s, 1), xycoords=("data", "axes fraction"), xytext=(3, -3), family=families,
                       textcoords="offset points", va="top", fontsize="small", color="tab:purple")
    music[-1].set_xlabel("time (s)")
    music[-1].set_xlim(0, seconds)
    facts = (f"mix {first.loudness_lufs:.1f} LUFS, true peak {first.true_peak_dbtp:.1f} dBTP" if len(tracks) == 1
             else f"{len(tracks)} takes")
    fig.suptitle(f"{title}: {facts}", family=families)
    fig.tight_layout()
    return fig


def write_plot(path: Path, original: np.ndarray | None, tracks: Sequence, *, sample_rate: int, title: str,
               depth_db: float, styles_at: Sequence[tuple[float, str]] = (), take_numbers: Sequence[int] | None = None,
               this_take: int | None = None) -> Path:
    """Write :func:`plot_figure` as a PNG, atomically."""
    import matplotlib.pyplot as plt

    fig = plot_figure(original, tracks, sample_rate=sample_rate, title=title, depth_db=depth_db, styles_at=styles_at,
                      take_numbers=take_numbers, this_take=this_take)
    try:
        with atomic_output(path, overwrite=True) as temp:
            fig.savefig(temp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path
