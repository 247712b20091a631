"""Run planned jobs on a Ray cluster: one loaded model per GPU (or N CPU actors), clips sent to it in batches.

:class:`RayExecutor` has the executor interface of :mod:`scoretrack.executors` (``run(jobs, *,
on_result, on_step)``), so planning, resume and reporting stay in :func:`scoretrack.pipeline.score_many`.
Workers read inputs and write outputs at the paths the driver planned: every node must see the same
files at the same paths (a network folder, or one machine). Ray is an optional extra
(``pip install 'scoretrack[ray]'``).

Each actor loads the model once and is sent at most :data:`IN_FLIGHT_PER_ACTOR` batches at a time, so
a job list of any length never floods the object store. A clip that raises fails alone (inside
:meth:`Scorer.run_batch`). A clip that kills its actor (segfault, out of memory) takes its batch down
with it: every clip of that batch is retried once, alone, on an actor with nothing else to do, so the
one that kills it again is named and failed, and the dead actor is replaced.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

try:
    import ray
    from ray.exceptions import RayActorError, RayTaskError
except ImportError as error:  # the extra is missing
    raise ImportError("scoretrack.ray_executor needs Ray: pip install 'scoretrack[ray]'") from error

from .errors import BadParameterError, ScoretrackError, UnreadableMediaError
from .executors import batches
from .plan import Job
from .results import ScoreResult

IN_FLIGHT_PER_ACTOR = 2  # batches sent to one actor and not yet back: one running, one waiting its turn
LOCAL_OBJECT_STORE_BYTES = 512 << 20  # object store of a local Ray (jobs and results are small)
POLL_S = 0.5  # how often the driver reads the step counter (and notices Ctrl-C while waiting)
STEP_FLUSH_S = 0.5  # how often an actor reports decode steps during a batch
RAY_SOCKET_PATH_MAX = 107  # bytes in a Unix socket path
RAY_SOCKET_TAIL = len("/ray/session_2026-01-01_00-00-00_000000_4294967/sockets/plasma_store")
STEPS_SLICE = 256  # batches sent at once to count decode steps (a long job list is not sent whole)
WAIT_NOTICE_S = 60.0  # say once what the actors are waiting for when none has started by then
CRASH_ON = "SCORETRACK_TEST_CRASH_ON"  # test-only: an input file name whose batch makes its actor exit hard


class WorkerDiedError(ScoretrackError):
    """The Ray worker died while scoring this clip, in its batch and again alone (crash, out of memory)."""


class RayExecutor:
    """Runs jobs on Ray actors, each holding a loaded model; results come back as batches finish.

    Parameters
    ----------
    model : str
        Hub id or folder, loaded by every actor (a folder must be at the same path on every node).
    device : str
        ``auto`` or ``cuda``: one actor per GPU (``num_gpus=1``), CPU actors when the cluster has no
        GPU (``cuda`` then refuses); ``cpu``: CPU actors only.
    dtype : str
        As for :class:`scoretrack.pipeline.Scorer`, in each actor.
    address : str, optional
        A cluster to join (``auto``, ``ray://head:10001``); default: start a local Ray on this machine,
        and stop it when done. When Ray is already initialised in this process, that one is used and
        left running.
    actors : int, optional
        Scorer actors; default one per GPU, or 1 on a cluster without GPUs. CPU actors share the
        cluster's CPUs evenly (at least 1 each).
    object_store_bytes : int
        Object store of a local Ray (ignored when joining a cluster).
    on_status : callable, optional
        Told one line when Ray starts and while actors load or wait for resources.
    """

    def __init__(self, *, model: str, device: str = "auto", dtype: str = "auto", quantize: str | None = None,
                 address: str | None = None,
                 actors: int | None = None, object_store_bytes: int = LOCAL_OBJECT_STORE_BYTES,
                 on_status: Callable[[str], None] | None = None):
        if actors is not None and (isinstance(actors, bool) or not isinstance(actors, int) or actors < 1):
            raise BadParameterError(f"actors={actors!r} must be a positive number of scorer actors")
        if device not in ("auto", "cpu", "cuda"):
            raise BadParameterError(f"device={device!r}: on Ray each actor is given its own GPU; "
                                    "use auto, cuda or cpu")
        self.device, self.address, self.actors = device, address, actors
        self.object_store_bytes = object_store_bytes
        self.on_status = on_status or (lambda line: None)
        self._make_scorer = functools.partial(_load_scorer, model, dtype=dtype, quantize=quantize)

    def run(self, jobs: Sequence[Job], *, on_result: Callable[[ScoreResult], None],
            on_step: Callable[[int], None] | None = None, on_total: Callable[[int], None] | None = None) -> None:
        """Score every job on the cluster, calling ``on_result`` once per job in the order they finish.

        ``on_total`` is told the decode steps ahead (counted by the first actor with a loaded model),
        ``on_step`` the steps done on every actor, a few times a second."""
        started = time.perf_counter()
        ours = not ray.is_initialized()  # a Ray this call starts or joins is shut down when it ends, however
        # Ray prints its notes (a worker died, ...) on stdout, which belongs to the caller's results (--json)
        with contextlib.redirect_stdout(sys.stderr):
            try:
                if ours:
                    self._connect()
                _Dispatch(self, started, on_result, on_step or (lambda steps: None)).run(list(jobs), on_total=on_total)
            except SystemError as error:
                # Ray's blocking calls run signal handlers and wrap what they raise (the CLI's Interrupted)
                if isinstance(error.__cause__, BaseException) and not isinstance(error.__cause__, Exception):
                    raise error.__cause__ from None
                raise
            finally:
                if ours:
                    ray.shutdown()

    def _connect(self) -> None:
        """Join ``address`` or start a local Ray."""
        settings = {"log_to_driver": False, "logging_level": logging.ERROR}
        if self.address is None:
            check_temp_dir()
            settings.update(address="local", include_dashboard=False, object_store_memory=self.object_store_bytes)
            self.on_status("starting a local Ray")
        else:
            settings.update(address=self.address)
            self.on_status(f"joining the Ray cluster at {self.address}")
        main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM) if main else None
        try:
            ray.init(**settings)
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = f"--ray-address {self.address}" if self.address else "a local Ray"
            raise BadParameterError(f"{where}: cannot start or join Ray ({_first_line(error)})") from error
        finally:
            if main:  # ray.init replaces the SIGTERM handler with a bare exit; keep the caller's
                signal.signal(signal.SIGTERM, previous)

    def actor_options(self) -> tuple[int, dict]:
        """How many scorer actors to start on the connected cluster, and the resources of each."""
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if self.device == "cuda" and not gpus:
            raise BadParameterError("device=cuda: the Ray cluster has no GPU; use --device auto or cpu")
        nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        if self.device != "cpu" and gpus:  # the CPU stages (decode, speech detection, mix) get the GPU's share
            share = min(int(n.get("CPU", 0) // n["GPU"]) for n in nodes if n.get("GPU"))
            return self.actors or gpus, {"num_gpus": 1, "num_cpus": max(1, share)}
        count = self.actors or 1
        largest = max((int(n.get("CPU", 0)) for n in nodes), default=1)
        return count, {"num_cpus": max(1, min(int(resources.get("CPU", 1)) // count, largest))}


def check_temp_dir() -> None:
    """Refuse a RAY_TMPDIR (or TMPDIR) too long for Ray's socket paths, which fail obscurely otherwise."""
    folder = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"  # Ray's own rule
    room = RAY_SOCKET_PATH_MAX - RAY_SOCKET_TAIL
    if len(os.fsencode(folder)) > room:
        raise BadParameterError(f"RAY_TMPDIR={folder}: too long for Ray's socket paths (at most {room} bytes); "
                                "point RAY_TMPDIR at a short folder such as /tmp")


def _load_scorer(model: str, *, device: str, dtype: str, quantize: str | None):
    from .pipeline import Scorer

    return Scorer(model, device=device, dtype=dtype, quantize=quantize)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def worker_paths(job: Job) -> list[str]:
    """Every path a worker opens for a job: the input, the output folder and a melody file."""
    paths = [str(job.path), str(job.output.parent)]
    if job.options.melody.source == "file":
        paths.append(str(job.options.melody.file))
    return paths


@ray.remote(num_cpus=0)
class _StepCounter:
    """Decode steps reported by the actors, taken by the driver for its progress bar."""

    def __init__(self):
        self.steps = 0

    def add(self, steps: int) -> None:
        self.steps += steps

    def take(self) -> int:
        steps, self.steps = self.steps, 0
        return steps


@ray.remote
class _ScorerActor:
    """One loaded model on one GPU (or a share of CPUs), scoring the batches it is sent."""

    def __init__(self, make_scorer, counter):
        self.make_scorer, self.counter, self.scorer, self.worker = make_scorer, counter, None, None

    def load(self) -> str:
        """Load the model (an error here is raised to the driver as is); return where this actor runs."""
        device = "cuda" if ray.get_gpu_ids() else "cpu"
        self.scorer = self.make_scorer(device=device)
        self.worker = f"{self.scorer.worker} ray-actor:{ray.get_runtime_context().get_actor_id()[:12]}"
        return self.worker

    def total_steps(self, jobs: list[Job]) -> int:
        return self.scorer.total_steps(jobs)

    def missing(self, paths: list[str]) -> list[str]:
        """The paths this node cannot see."""
        return [path for path in paths if not os.path.exists(path)]

    def run_batch(self, jobs: list[Job]) -> tuple[list[ScoreResult], float]:
        """Score a batch; return its results and the seconds it took here."""
        name = os.environ.get(CRASH_ON)
        if name and any(job.path.name == name for job in jobs):
            os._exit(1)  # test-only (SCORETRACK_TEST_CRASH_ON): die as a segfault or the OOM killer would
        start = time.perf_counter()
        unsent = [0, start]  # steps not yet reported, time of the last report

        def on_step(steps: int) -> None:
            unsent[0] += steps
            if time.perf_counter() - unsent[1] >= STEP_FLUSH_S:
                self.counter.add.remote(unsent[0])
                unsent[:] = [0, time.perf_counter()]

        results = self.scorer.run_batch(jobs, on_step=on_step)
        ray.get(self.counter.add.remote(unsent[0]))  # counted before the driver sees the results
        for result in results:
            result.worker = self.worker
            if result.exception is not None:
                result.exception = portable(result.exception, self.worker)
        return results, time.perf_counter() - start


def portable(error: BaseException, worker: str) -> BaseException:
    """The exception with the worker's traceback as a note, or a plain ScoretrackError if it cannot be pickled."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        error = ScoretrackError(f"{type(error).__name__}: {error}").with_traceback(error.__traceback__)
    error.add_note(f"on {worker}:\n{''.join(traceback.format_tb(error.__traceback__))}".rstrip())
    return error


@dataclass(eq=False)
class _Actor:
    handle: object
    ready: object | None  # the load() reference until the model is loaded
    worker: str = ""
    sent: set = field(default_factory=set)  # references of the batches in flight on it
    alone: bool = False  # scoring a retried clip, with nothing else queued


class _Dispatch:
    """One run: starts the actors, feeds them batches, retries what a dying actor took down, reports results."""

    def __init__(self, executor: RayExecutor, started: float, on_result, on_step):
        self.executor, self.started, self.on_result, self.on_step = executor, started, on_result, on_step
        self.pending: deque[list[Job]] = deque()  # batches not yet sent
        self.retries: deque[Job] = deque()  # clips of batches whose actor died, to score alone
        self.flight: dict = {}  # batch reference -> (actor, jobs, alone)
        self.actors: list[_Actor] = []
        self.start_error: BaseException | None = None  # why the last actor that failed to load failed
        self.counter = None
        self.options: dict = {}

    def run(self, jobs: list[Job], *, on_total: Callable[[int], None] | None) -> None:
        self.counter = _StepCounter.remote()
        count, self.options = self.executor.actor_options()
        what = f"{self.options['num_cpus']} CPU" + (" and 1 GPU" if "num_gpus" in self.options else "")
        self.executor.on_status(f"{count} scorer actor{'s' * (count > 1)} ({what} each) loading the model")
        try:
            self.actors = [self._start() for _ in range(count)]
            first = self._first_ready()
            if first is None:
                self._fail_all(jobs)
                return
            self.pending.extend(batches(self._seen_by(first, jobs)))
            if on_total is not None:
                on_total(self._total_steps(first))
            self._loop()
        finally:
            for actor in self.actors:
                ray.kill(actor.handle)

    def _start(self) -> _Actor:
        handle = _ScorerActor.options(**self.options).remote(self.executor._make_scorer, self.counter)
        return _Actor(handle, handle.load.remote())

    def _first_ready(self) -> _Actor | None:
        """Wait for the first actor with a loaded model (None when none could load)."""
        noticed = False
        while True:
            starting = [a.ready for a in self.actors if a.ready is not None]
            if not starting:
                return None
            done, _ = ray.wait(starting, num_returns=1, timeout=POLL_S)
            for ref in done:
                self._loaded(ref)
            ready = [a for a in self.actors if a.worker]
            if ready:
                return ready[0]
            if not noticed and time.perf_counter() - self.started > WAIT_NOTICE_S:
                free = {k: v for k, v in ray.available_resources().items() if k in ("CPU", "GPU")}
                self.executor.on_status(f"no scorer actor ready after {WAIT_NOTICE_S:.0f} s: loading the model, or "
                                        f"waiting for {self.options} each (the cluster has {free or 'none'} free)")
                noticed = True

    def _loaded(self, ref) -> None:
        """An actor's load() returned: it is ready, or it is dropped (it is not restarted: it would fail again)."""
        actor = next(a for a in self.actors if a.ready == ref)
        actor.ready = None
        try:
            actor.worker = ray.get(ref)
        except (RayTaskError, RayActorError) as error:
            self.start_error = error
            self.actors.remove(actor)
            ray.kill(actor.handle)

    def _seen_by(self, actor: _Actor, jobs: list[Job]) -> list[Job]:
        """The jobs whose files the worker side can see; the others fail by name."""
        missing = set(ray.get(actor.handle.missing.remote(sorted({p for job in jobs for p in worker_paths(job)}))))
        seen = []
        for job in jobs:
            lost = [p for p in worker_paths(job) if p in missing]
            if lost:
                self._report(ScoreResult.failure(job.index, job.path, UnreadableMediaError(
                    f"{lost[0]}: not found on the Ray worker {actor.worker}; workers read and write the paths "
                    "this machine planned, so put inputs and outputs on storage every node mounts at the same path"),
                    duration_s=job.info.duration_s))
            else:
                seen.append(job)
        return seen

    def _total_steps(self, actor: _Actor) -> int:
        """Decode steps of every pending batch, counted on ``actor`` a slice of batches at a time."""
        pending = list(self.pending)
        slices = [[job for batch in pending[s : s + STEPS_SLICE] for job in batch]
                  for s in range(0, len(pending), STEPS_SLICE)]
        return sum(ray.get(actor.handle.total_steps.remote(jobs)) for jobs in slices)

    def _loop(self) -> None:
        polled = time.perf_counter()
        while self.pending or self.retries or self.flight:
            self._send()
            refs = list(self.flight) + [a.ready for a in self.actors if a.ready is not None]
            if not refs:  # every actor failed to load
                self._fail_all([job for batch in self.pending for job in batch] + list(self.retries))
                return
            done, _ = ray.wait(refs, num_returns=1, timeout=POLL_S)
            if time.perf_counter() - polled >= POLL_S or done:
                steps = ray.get(self.counter.take.remote())
                if steps:
                    self.on_step(steps)
                polled = time.perf_counter()
            for ref in done:
                if ref in self.flight:
                    self._finished(ref)
                else:
                    self._loaded(ref)

    def _send(self) -> None:
        """Give retried clips to idle actors, one each and alone; fill the others up to IN_FLIGHT_PER_ACTOR."""
        for actor in [a for a in self.actors if a.worker]:
            if self.retries and not actor.sent:
                self._submit(actor, [self.retries.popleft()], alone=True)
            while self.pending and not actor.alone and len(actor.sent) < IN_FLIGHT_PER_ACTOR:
                self._submit(actor, self.pending.popleft(), alone=False)

    def _submit(self, actor: _Actor, jobs: list[Job], *, alone: bool) -> None:
        ref = actor.handle.run_batch.remote(jobs)
        actor.sent.add(ref)
        actor.alone = alone
        self.flight[ref] = (actor, jobs, alone)

    def _finished(self, ref) -> None:
        actor, jobs, alone = self.flight.pop(ref)
        actor.sent.discard(ref)
        actor.alone = False
        try:
            results, busy_s = ray.get(ref)
        except RayActorError as error:
            self._replace(actor)
            died = WorkerDiedError(f"the worker died while scoring this clip ({type(error).__name__}: "
                                   f"{_first_line(error)})")
            died.__cause__ = error
            self._lost(jobs, alone, died, actor.worker)
            return
        except RayTaskError as error:  # raised outside run_batch's per-clip handling
            self._lost(jobs, alone or len(jobs) == 1, error.cause, actor.worker)
            return
        queued_s = max(0.0, time.perf_counter() - self.started - busy_s)
        for result in results:
            result.queued_s = queued_s
            self._report(result)

    def _lost(self, jobs: list[Job], alone: bool, error: BaseException, worker: str) -> None:
        """A batch came back without results: retry each clip alone, or fail the clip that was already alone."""
        if alone:
            [job] = jobs
            self._report(ScoreResult.failure(job.index, job.path, error, duration_s=job.info.duration_s,
                                             worker=worker))
        else:
            self.retries.extend(jobs)

    def _replace(self, actor: _Actor) -> None:
        """Start a fresh actor in place of a dead one (once, however many of its batches report the death)."""
        if actor in self.actors:
            self.actors.remove(actor)
            ray.kill(actor.handle)
            self.actors.append(self._start())

    def _fail_all(self, jobs: list[Job]) -> None:
        error = self.start_error
        cause = error.cause if isinstance(error, RayTaskError) else error
        reason = ScoretrackError(f"no scorer actor could load the model ({type(cause).__name__}: {_first_line(cause)})")
        reason.__cause__ = cause
        for job in jobs:
            self._report(ScoreResult.failure(job.index, job.path, reason, duration_s=job.info.duration_s))
        self.pending.clear()
        self.retries.clear()

    def _report(self, result: ScoreResult) -> None:
        if result.queued_s is None:
            result.queued_s = max(0.0, time.perf_counter() - self.started)
        self.on_result(result)
