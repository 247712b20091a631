"""How planned jobs are run: batches of clips on a loaded model, results reported as they finish.

An executor has one method, ``run(jobs, *, on_result, on_step, on_total)``: it scores every job
(each a :class:`scoretrack.plan.Job`) and calls ``on_result`` once per job with its
:class:`ScoreResult`, never raising for one clip's failure (a stop while a clip's takes are written
reports the clip ``interrupted``, with the takes complete, before it goes on); ``on_total`` is told the decode steps
ahead once they are known, ``on_step`` is called as they run. Planning, resume and reporting live above it
(:func:`scoretrack.pipeline.score_many`), so they exist once for every executor.
"""

from __future__ import annotations

from typing import Callable, Sequence

from .plan import Job
from .results import ScoreResult


def batches(jobs: Sequence[Job]) -> list[list[Job]]:
    """Group jobs that can share generate() calls (equal generation settings), at most batch_size each."""
    groups: dict = {}
    for job in jobs:
        groups.setdefault(job.options.generation, []).append(job)
    out = []
    for options, group in groups.items():
        out += [group[s : s + options.batch_size] for s in range(0, len(group), options.batch_size)]
    return out


class LocalExecutor:
    """Runs jobs in this process on one model, batch by batch (the default).

    Parameters
    ----------
    scorer : Scorer or callable returning one
        The loaded model, or a factory called the first time a job needs it (so a rerun where every
        clip is done never loads the model).
    """

    def __init__(self, scorer):
        self._scorer = scorer

    def scorer(self):
        if callable(self._scorer) and not hasattr(self._scorer, "run_batch"):
            self._scorer = self._scorer()
        return self._scorer

    def run(self, jobs: Sequence[Job], *, on_result: Callable[[ScoreResult], None],
            on_step: Callable[[int], None] | None = None, on_total: Callable[[int], None] | None = None) -> None:
        scorer = self.scorer()
        if on_total is not None:
            on_total(scorer.total_steps(jobs))
        for batch in batches(jobs):
            for result in scorer.run_batch(batch, on_step=on_step, on_stopped=on_result):
                on_result(result)
