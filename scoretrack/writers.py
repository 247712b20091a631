"""Writers at the edge: the scored output (video mux or audio file), stems, plot, timelines and the sidecar.

Each writes to a temporary name beside its target and renames it into place
(:func:`scoretrack.media.atomic_output`), streaming the soundtrack block by block so an hour-long
clip is never held whole at 48 kHz.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import media
from .media import atomic_output
from .mix import ENVELOPE_HOP_S
from .plan import STEM_FORMATS, Job
from .timeline import TIMELINE_KINDS

ENVELOPE_RATE = round(1 / ENVELOPE_HOP_S)  # points per second of the ducking envelope
AUDIO_FILE_FORMATS = {".wav": ("WAV", "PCM_24"), ".flac": ("FLAC", "PCM_24")}


def write_audio_files(paths: Sequence[Path], blocks: Iterable[Sequence[np.ndarray]], *, sample_rate: int,
                      file_format: str, subtype: str, overwrite: bool = True) -> list[Path]:
    """Write audio files with soundfile, atomically, in one pass: each item of ``blocks`` holds one
    float ``(channels, n)`` block per path, in order."""
    import soundfile

    with contextlib.ExitStack() as stack:
        outs = []
        for parts in blocks:
            if not outs:
                for path, part in zip(paths, parts):
                    temp = stack.enter_context(atomic_output(path, overwrite=overwrite))
                    outs.append(stack.enter_context(soundfile.SoundFile(
                        str(temp), "w", samplerate=sample_rate, channels=part.shape[0], format=file_format,
                        subtype=subtype)))
            for out, part in zip(outs, parts):
                out.write(np.ascontiguousarray(part.T))
        for out in outs:
            out.close()  # before atomic_output renames the file into place
    return list(paths)


def write_output(job: Job, track, *, sample_rate: int) -> Path:
    """The scored file: the video with its new soundtrack (picture copied), or the audio file."""
    mix_blocks = (mixed for mixed, _, _ in track.blocks())
    if job.info.is_video:
        return media.mux(job.info.path, mix_blocks, sample_rate=sample_rate, output=job.output,
                         layout=job.layout,
                         keep_original_audio=job.options.keep_original_audio, overwrite=True, info=job.info)
    file_format, subtype = AUDIO_FILE_FORMATS[job.output.suffix.lower()]
    return write_audio_files([job.output], ((mixed,) for mixed in mix_blocks), sample_rate=sample_rate,
                             file_format=file_format, subtype=subtype)[0]


def write_side_files(job: Job, track, original: np.ndarray | None, *, sample_rate: int) -> dict[str, Path]:
    """Write the side files ``job.make`` names; return name -> path of those written.

    All or none: when one fails, those this call wrote are removed before the error goes on."""
    made: dict[str, Path] = {}
    wanted = [name for name in job.make if name != "output"]
    try:
        stems = [name for name in ("music", "music-dry") if name in wanted]
        if stems:
            made.update(write_stems(job, track, stems, sample_rate=sample_rate))
        if "plot" in wanted:
            made["plot"] = write_plot(job.side["plot"], original, track, sample_rate=sample_rate)
        kinds = [kind for kind in TIMELINE_KINDS if kind in wanted]
        for kind, document in (timeline_documents(job, track, kinds) if kinds else {}).items():
            with atomic_output(job.side[kind], overwrite=True) as temp:
                temp.write_bytes(document)
            made[kind] = job.side[kind]
    except BaseException:
        for path in made.values():
            path.unlink(missing_ok=True)
        raise
    return made


def write_stems(job: Job, track, names: list[str], *, sample_rate: int) -> dict[str, Path]:
    """The ducked (``music``) and un-ducked (``music-dry``) music, one channel per channel the music has,
    both written in one pass over the rendered blocks."""
    _, file_format, subtype = STEM_FORMATS[job.stem_format]
    part = {"music": 2, "music-dry": 1}
    paths = write_audio_files([job.side[name] for name in names],
                              ([parts[part[name]] for name in names] for parts in track.blocks()),
                              sample_rate=sample_rate, file_format=file_format, subtype=subtype)
    return dict(zip(names, paths))


def timeline_documents(job: Job, track, kinds: Sequence[str], *,
                       takes: Sequence[tuple[int, Path]] | None = None) -> dict[str, bytes]:
    """The editing timelines ``kinds`` (of :data:`scoretrack.timeline.TIMELINE_KINDS`), rendered, none yet
    written: picture, original sound and the dry music takes (default: take 1, the dry stem) with the
    ducking as volume keys; markers at the window seams, cuts and style changes."""
    from . import timeline

    markers = [(t, "seam") for t in track.seams] + [(t, "cut") for t in track.cuts]
    markers += [(t, f"style: {text}") for t, text in job.options.styles_at]
    facts = timeline.build_timeline(job.info, takes=takes or [(1, job.side["music-dry"])], gain=track.envelope,
                                    gain_rate=ENVELOPE_RATE, markers=sorted(markers),
                                    audio_only_rate=job.timeline_rate)
    return {kind: timeline.render_timeline(facts, kind) for kind in kinds}


def write_sidecar(path: Path, record: dict) -> Path:
    """Record how an output was made (settings, input and output identity, side files), so a rerun can resume."""
    with atomic_output(path, overwrite=True) as temp:
        temp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return path


def write_plot(path: Path, original: np.ndarray | None, track, *, sample_rate: int) -> Path:
    """One picture on one time axis: the original waveform, detected speech, music gain, seams and cuts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(12, 5))
    if original is not None:
        step = max(1, original.shape[1] // 4000)
        top.plot(np.arange(0, original.shape[1], step) / sample_rate, original[:, ::step].mean(axis=0), lw=0.5,
                 color="0.3", label="original audio")
    for start, end in track.speech:
        top.axvspan(start, end, color="tab:orange", alpha=0.25, lw=0)
    top.set_ylabel("original (speech shaded)")
    envelope = track.envelope
    bottom.plot(np.arange(envelope.size) / ENVELOPE_RATE, 20 * np.log10(np.maximum(envelope, 1e-6)), color="tab:blue",
                label="music gain")
    bottom.set_ylabel("music gain (dB)")
    bottom.set_xlabel("time (s)")
    for axis in (top, bottom):
        for seam in track.seams:
            axis.axvline(seam, color="tab:red", ls="--", lw=0.8)
        for cut in track.cuts:
            axis.axvline(cut, color="tab:green", ls=":", lw=0.8)
    fig.suptitle(f"{track.loudness_lufs:.1f} LUFS, true peak {track.true_peak_dbtp:.1f} dBTP; "
                 "red: window seams, green: picture cuts")
    fig.tight_layout()
    with atomic_output(path, overwrite=True) as temp:
        fig.savefig(temp, format="png", dpi=100)
    plt.close(fig)
    return path
