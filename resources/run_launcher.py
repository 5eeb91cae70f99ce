"""Runs whose process died are marked failed, so they do not stay STARTED for ever and fill the queue.

A run's process can die without a word: ``odins-ravne process`` killed with kill -9, a closed laptop
lid's OOM kill, a UI run's worker that crashed. Its run then stays STARTED, and each such run takes
one of the local queue's ``max_concurrent_runs`` slots: after two, runs launched from the UI stay
queued. Dagster's run monitoring fails such runs, but only for run launchers that can tell whether a
run's worker is alive, and the default launcher cannot. :class:`LocalRunLauncher` can: a run's worker
is the process that wrote its RUN_START event (the CLI itself for its in-process runs, the run
worker for a run launched from the UI), and that pid either still runs, or does not.

Two ways in, one check (:func:`worker_is_gone`): the daemon of ``make dev`` runs Dagster's run
monitoring with this launcher (``dagster.yaml``), and ``odins-ravne process``, which often runs with
no daemon at all, calls :func:`fail_orphaned_runs` before it starts. Decision: a pid is only
meaningful on the machine that wrote it, so this is for the local, one-machine instance; the shared
production instance (``infra/dagster.prod.yaml``) keeps the default launcher.
"""

from __future__ import annotations

import psutil
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus


def worker_pid(instance: DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The pid of the process that started run ``run_id`` and when, or None before it started."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_START, limit=1).records
    if not records:
        return None
    entry = records[0].event_log_entry
    return entry.dagster_event.pid, entry.timestamp


def worker_is_gone(instance: DagsterInstance, run_id: str) -> str | None:
    """Why run ``run_id``'s worker is known dead (a line for the run's log), or None if it may live."""
    started = worker_pid(instance, run_id)
    if started is None or started[0] is None:
        return None
    pid, at = started
    try:
        process = psutil.Process(pid)
        # A pid is reused: a process younger than the run is not its worker.
        if process.create_time() <= at + 1.0 and process.status() != psutil.STATUS_ZOMBIE:
            return None
    except psutil.NoSuchProcess:
        pass
    return f"the process that ran it (pid {pid}) is gone, killed or crashed; finished work is checkpointed, a new run resumes it"


def fail_orphaned_runs(instance: DagsterInstance) -> list[str]:
    """Mark every STARTED run whose worker is gone as failed; returns their run ids."""
    failed = []
    for run in instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED])):
        reason = worker_is_gone(instance, run.run_id)
        if reason:
            instance.report_run_failed(run, f"Run failed: {reason}")
            failed.append(run.run_id)
    return failed


class LocalRunLauncher(DefaultRunLauncher):
    """Dagster's default launcher, plus the worker health check that run monitoring needs."""

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, **config_value)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        reason = worker_is_gone(self._instance, run.run_id)
        return CheckRunHealthResult(WorkerStatus.FAILED, reason) if reason else CheckRunHealthResult(WorkerStatus.RUNNING)
