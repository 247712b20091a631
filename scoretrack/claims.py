"""One writer per output: a run claims each output and its side files before its work.

A claim is a lock file beside each path, ``.NAME.scoretrack-lock``, held with ``fcntl.flock``: the
kernel releases it when the process ends, however it ends, so a killed run never blocks the next
one (its lock file, left behind, is taken over). A second run on the same files finds them taken
and reports each such clip as failed, naming the holder's pid, or waits for them (``wait``). After a
wait, what is left to do is decided again, since the other run may have made the files meanwhile.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
from pathlib import Path
from typing import Callable, Sequence

from .errors import ScoretrackError
from .options import ScoreOptions
from .plan import Job, sidecar_path, skipped_result, take_make, timeline_order
from .results import ScoreResult

LOCK_SUFFIX = ".scoretrack-lock"


class OutputBusyError(ScoretrackError):
    """Another scoretrack run is writing this output (or one of its side files)."""


def lock_path(path: Path) -> Path:
    """The lock file that claims ``path``: hidden, beside it."""
    return path.with_name(f".{path.name}{LOCK_SUFFIX}")


def _holder(lock: Path) -> str:
    try:
        return lock.read_text(encoding="ascii").strip() or "unknown"
    except (OSError, UnicodeDecodeError):
        return "unknown"


def _lock(path: Path, *, wait: bool, on_wait: Callable[[str], None] | None) -> int:
    """Take ``path``'s lock file; return its descriptor.

    Raises
    ------
    OutputBusyError
        Another process holds it and ``wait`` is false.
    """
    lock = lock_path(path)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                os.close(fd)
                raise OutputBusyError(f"{path} is being written by another scoretrack run (pid {_holder(lock)}); "
                                      f"wait for it or use --wait") from None
            if on_wait is not None:
                on_wait(f"waiting for {path}: another scoretrack run (pid {_holder(lock)}) is writing it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        try:  # the holder removes its lock file on release: a lock on a removed file claims nothing
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


class Claims:
    """The lock files this run holds, by job index; :meth:`release` gives a job's back."""

    def __init__(self):
        self._held: dict[int, list[tuple[Path, int]]] = {}

    def release(self, index: int) -> None:
        for path, fd in self._held.pop(index, []):
            try:
                lock_path(path).unlink(missing_ok=True)  # while still locked, so no one takes a removed file
            finally:
                os.close(fd)

    def claim(self, index: int, paths: Sequence[Path]) -> None:
        """Claim ``paths`` (in sorted order) under ``index``, released by :meth:`release`.

        Raises
        ------
        OutputBusyError
            Another run holds one of them; none stays claimed.
        """
        try:
            for path in sorted(paths):
                self._held.setdefault(index, []).append((path, _lock(path, wait=False, on_wait=None)))
        except BaseException:
            self.release(index)
            raise

    def release_all(self) -> None:
        for index in list(self._held):
            self.release(index)

    def __enter__(self) -> "Claims":
        return self

    def __exit__(self, *exc) -> None:
        self.release_all()

    def claim_jobs(self, jobs: Sequence[Job], settled: Sequence[ScoreResult], *, options: dict[int, ScoreOptions],
                   model_name: str, overwrite: bool, wait: bool = False,
                   on_wait: Callable[[str], None] | None = None) -> tuple[list[Job], list[ScoreResult]]:
        """Claim every file of every job and of every clip the plan found done (``skipped`` in
        ``settled``, whose settings ``options`` gives by index), then decide again what is left, since
        another run may have written them meanwhile.

        Returns the claimed jobs with work left, and every other clip's result: ``settled``'s failures,
        the clips still done (``skipped``, released at once), and failures for clips another run holds
        (:class:`OutputBusyError`, unless ``wait``) or has made meanwhile with other settings. Paths are
        locked in one sorted order, so two waiting runs never wait for each other."""
        done = [r for r in settled if r.status == "skipped"]
        paths = {job.index: job.files() for job in jobs}
        paths.update({r.index: [path for take in r.takes for path in (take.output, sidecar_path(take.output),
                                                                      *take.side.values())] for r in done})
        owner = {path.resolve(): index for index, named in paths.items() for path in named}
        failed: dict[int, BaseException] = {}
        for path in sorted(owner):
            index = owner[path]
            if index in failed:
                continue
            try:
                self._held.setdefault(index, []).append((path, _lock(path, wait=wait, on_wait=on_wait)))
            except (OSError, OutputBusyError) as error:
                failed[index] = error
                self.release(index)
        ready, results = [], [r for r in settled if r.status != "skipped"]
        for job in jobs:
            try:
                if job.index in failed:
                    raise failed[job.index]
                numbers = [take.number for take in job.timeline_takes()]  # those its timelines hold, in order
                job.takes = tuple(dataclasses.replace(take, make=take_make(
                    take.output, job.path, take.fingerprint, take.side, takes=numbers, overwrite=overwrite))
                    if take.number in job.options.take_numbers else take for take in job.takes)
            except (OSError, ScoretrackError) as error:
                self.release(job.index)
                results.append(ScoreResult.failure(job.index, job.path, error, duration_s=job.info.duration_s))
                continue
            if job.to_generate():
                ready.append(job)
            else:
                self.release(job.index)
                results.append(skipped_result(job))
        for result in done:
            self.release(result.index)
            try:
                if result.index in failed:
                    raise failed[result.index]
                clip = options[result.index]
                numbers = [t.number for t in timeline_order(result.takes)]
                for take in result.takes:
                    if take_make(take.output, result.input, clip.fingerprint(model_name, take.number), take.side,
                                 takes=numbers, overwrite=False):
                        raise OutputBusyError(f"{take.output}: another scoretrack run changed it while this one "
                                              "waited; run again")
                results.append(result)
            except (OSError, ScoretrackError) as error:
                results.append(ScoreResult.failure(result.index, result.input, error, duration_s=result.duration_s))
        return ready, sorted(results, key=lambda r: r.index)
