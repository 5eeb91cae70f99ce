"""A Dagster Pipes client for AWS Batch, with shards, spot fallback and a local runner.

dagster-aws ships Pipes clients for ECS, EMR, Glue and Lambda but none for Batch; this one follows
the shape of ``PipesECSClient``: open a Pipes session, put its bootstrap variables into the job's
container environment, ``submit_job``, wait, forward logs, terminate the job when the Dagster run is
cancelled, and put the job's id, status and console link in the metadata.

Choices, and why:

* Context goes to the job through S3 (``PipesS3ContextInjector``) and messages come back through S3
  (``PipesS3MessageReader`` with stdout/stderr folded into the messages): the context of a shard
  lists up to ``max_images_per_job`` media, too much for an environment variable, and reading S3
  avoids the CloudWatch ``GetLogEvents`` throttling that ECS users of the CloudWatch reader hit.
* A camera of N media runs as ``ceil(N / max_images_per_job)`` *parallel jobs*, one Pipes session
  each, rather than one array job: the children of an array job share one environment, so they
  would share one Pipes message prefix and overwrite each other's message chunks.
* At most ``max_parallel_jobs`` jobs are in flight. Beyond keeping a backfill from flooding the
  queue, it makes "RUNNABLE for longer than ``fallback_timeout``" mean "the spot pool has no
  capacity" rather than "waiting behind our own shards", so the on-demand fallback only fires when
  it should.
* Spot reclaims are retried by Batch itself (the job definition's retry strategy, see
  :func:`retry_strategy`); this client only watches the attempts and reports them.
* ``describe_jobs`` is polled with exponential backoff that resets whenever a job changes state,
  so a long job costs a handful of calls an hour, and a quick one is seen finishing quickly.

With ``ODINS_RAVNE_BATCH_RUNNER=local`` every job is still submitted to the Batch API (moto in the
tests and the README's cloud-against-moto commands), and :class:`LocalBatchRunner` then executes the
submitted job's command itself, with that job's environment and retry strategy, as a local
subprocess: the Pipes round trip through S3 is the real one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import botocore.exceptions
from dagster import MaterializeResult, MetadataValue, PipesClient
from dagster._core.definitions.resource_annotation import TreatAsResourceParam
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.pipes.client import PipesClientCompletedInvocation
from dagster._core.pipes.utils import open_pipes_session
from dagster_aws.pipes import PipesS3ContextInjector, PipesS3MessageReader

from resources.aws import aws_client, batch_job_console_url, is_aws_endpoint

RUNNER_ENV = "ODINS_RAVNE_BATCH_RUNNER"
FINAL_STATUSES = ("SUCCEEDED", "FAILED")
# AWS writes this status reason when the EC2 instance under a job goes away: a spot reclaim.
SPOT_RECLAIM_REASON = "Host EC2*"
_JOB_NAME_OK = re.compile(r"[^A-Za-z0-9_-]")


class BatchJobFailed(RuntimeError):
    """A Batch job (or shard) ended FAILED; the message says which, why, and where to look."""


# ---------------------------------------------------------------------------------------------
# Retry strategy: spot reclaims retried, real failures not
# ---------------------------------------------------------------------------------------------


def retry_strategy(attempts: int = 3, *, retry_on_status_reasons: Sequence[str] = (SPOT_RECLAIM_REASON,)) -> dict:
    """The Batch ``retryStrategy``: RETRY when the host went away (spot reclaim), EXIT on anything else.

    A failure of our own code fails the same way on every attempt, so retrying it only burns GPU
    hours; a reclaimed spot instance says nothing about the job, so it is worth another attempt.
    """
    if not 1 <= attempts <= 10:
        raise ValueError(f"retry attempts must be between 1 and 10 (the Batch limit), got {attempts}")
    rules = [{"onStatusReason": reason, "action": "RETRY"} for reason in retry_on_status_reasons]
    rules.append({"onReason": "*", "action": "EXIT"})
    return {"attempts": attempts, "evaluateOnExit": rules}


def retry_strategy_from_profile(profile: Any) -> dict:
    """Retry strategy for a profile: more attempts when spot is on (reclaims happen), one otherwise."""
    compute = profile.cloud.aws.compute
    return retry_strategy(3 if compute.spot_instances else 1)


def _glob_match(pattern: str | None, value: str | None) -> bool:
    # Batch patterns are literal text with an optional trailing '*' (prefix match).
    if pattern is None:
        return True
    value = value or ""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def evaluate_on_exit(strategy: Mapping | None, *, status_reason: str | None, reason: str | None, exit_code: int | None) -> str:
    """What Batch does after a failed attempt: ``"RETRY"`` or ``"EXIT"`` (attempt limits aside).

    The first rule whose every condition matches decides; when none matches Batch retries.
    """
    rules = (strategy or {}).get("evaluateOnExit") or []
    for rule in rules:
        if (
            _glob_match(rule.get("onStatusReason"), status_reason)
            and _glob_match(rule.get("onReason"), reason)
            and _glob_match(rule.get("onExitCode"), None if exit_code is None else str(exit_code))
        ):
            return str(rule["action"]).upper()
    return "RETRY"


# ---------------------------------------------------------------------------------------------
# Local runner: execute submitted jobs here, with their own environment
# ---------------------------------------------------------------------------------------------


@dataclass
class _LocalJob:
    job_id: str
    queue: str
    command: list[str]
    env: dict[str, str]
    strategy: dict
    log_path: Path
    status: str = "RUNNABLE"
    status_reason: str | None = None
    created_at: int = field(default_factory=lambda: _now_ms())
    started_at: int | None = None
    stopped_at: int | None = None
    exit_code: int | None = None
    attempts: list[dict] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    terminate_reason: str | None = None


def _now_ms() -> int:
    return int(time.time() * 1000)


class LocalBatchRunner:
    """Runs jobs submitted to the Batch API as local subprocesses, the way Batch would run them.

    The job's command and environment come from its job definition and container overrides (read
    back from the Batch API), ``Ref::name`` parameters are substituted, and ``AWS_BATCH_JOB_ID``,
    ``AWS_BATCH_JOB_ATTEMPT`` and ``AWS_BATCH_JQ_NAME`` are set as Batch sets them. The machine's
    own environment is the base (it is the "container"), so the job reaches the same endpoint.

    ``capacity`` limits how many jobs of a queue run at once (the rest wait RUNNABLE); a capacity
    of 0 stands for a spot pool with no instances, which is how the on-demand fallback is exercised.
    A job process that dies of SIGKILL that this runner did not send stands for a reclaimed spot
    host: the attempt fails with Batch's ``Host EC2 (instance ...) terminated.`` reason and the
    job's retry strategy decides, as it would on AWS.
    """

    def __init__(
        self,
        batch_client: Any,
        *,
        capacity: Mapping[str, int] | None = None,
        max_running: int | None = None,
        log_dir: str | os.PathLike | None = None,
        cwd: str | os.PathLike | None = None,
        grace_seconds: float = 5.0,
    ):
        self._batch = batch_client
        self._capacity = dict(capacity or {})
        self._max_running = max_running
        self._log_dir = Path(log_dir or tempfile.mkdtemp(prefix="odins-ravne-batch-"))
        self._cwd = str(cwd) if cwd else None
        self._grace = grace_seconds
        self._jobs: dict[str, _LocalJob] = {}
        self._lock = threading.Condition()
        self._configured = False

    @classmethod
    def from_env(cls, batch_client: Any) -> "LocalBatchRunner | None":
        value = os.environ.get(RUNNER_ENV, "").strip().lower()
        if value in ("", "batch", "aws"):
            return None
        if value == "local":
            return cls(batch_client)
        raise ValueError(f"{RUNNER_ENV}={value!r} is not understood: use 'local' (run submitted jobs here) or leave it unset")

    # -- the Batch stand-in --------------------------------------------------------------------
    def configure_endpoint(self) -> None:
        """Tell moto to accept jobs without Docker (it has no engine here) so they do not FAIL there."""
        if self._configured or is_aws_endpoint(self._batch):
            self._configured = True
            return
        url = self._batch.meta.endpoint_url.rstrip("/") + "/moto-api/config"
        body = json.dumps({"batch": {"use_docker": False}}).encode()
        request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
        with contextlib.suppress(OSError):  # another S3/Batch-compatible endpoint: nothing to configure
            urllib.request.urlopen(request, timeout=5).close()
        self._configured = True

    def launch(self, job_id: str, submit_params: Mapping[str, Any]) -> None:
        definition = self._job_definition(submit_params["jobDefinition"])
        props = definition.get("containerProperties") or {}
        overrides = submit_params.get("containerOverrides") or {}
        parameters = {**(definition.get("parameters") or {}), **(submit_params.get("parameters") or {})}
        command = [_substitute(part, parameters) for part in (overrides.get("command") or props.get("command") or [])]
        if not command:
            raise ValueError(f"job definition {definition.get('jobDefinitionName')} has no command and none was given in containerOverrides")
        if command[0] in ("python", "python3"):
            command[0] = sys.executable  # the image's python is this venv's python here
        env = dict(os.environ)
        env.update({e["name"]: e["value"] for e in props.get("environment") or []})
        env.update({e["name"]: e["value"] for e in overrides.get("environment") or []})
        queue = str(submit_params["jobQueue"]).rsplit("/", 1)[-1]
        env.update({"AWS_BATCH_JOB_ID": job_id, "AWS_BATCH_JQ_NAME": queue})
        strategy = submit_params.get("retryStrategy") or definition.get("retryStrategy") or {"attempts": 1}
        job = _LocalJob(job_id, queue, command, env, strategy, self._log_dir / f"{job_id.replace(':', '_')}.log")
        with self._lock:
            self._jobs[job_id] = job
        threading.Thread(target=self._supervise, args=(job,), daemon=True, name=f"local-batch-{job_id}").start()

    def describe(self, job_id: str) -> dict | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            out: dict[str, Any] = {"status": job.status, "createdAt": job.created_at, "attempts": [dict(a) for a in job.attempts]}
            if job.status_reason:
                out["statusReason"] = job.status_reason
            if job.started_at:
                out["startedAt"] = job.started_at
            if job.stopped_at:
                out["stoppedAt"] = job.stopped_at
            out["container"] = {"exitCode": job.exit_code, "logStreamName": str(job.log_path)}
            return out

    def terminate(self, job_id: str, reason: str) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status in FINAL_STATUSES:
                return
            job.terminate_reason = reason
            proc = job.proc
            if job.status != "RUNNING":  # never started: Batch just fails it
                self._finish(job, "FAILED", reason)
                self._lock.notify_all()
                return
        _kill_group(proc, self._grace)

    def running_pid(self, job_id: str) -> int | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return job.proc.pid if job and job.proc and job.status == "RUNNING" else None

    def log_tail(self, job_id: str, lines: int = 20) -> str:
        job = self._jobs.get(job_id)
        if job is None or not job.log_path.exists():
            return ""
        return "\n".join(job.log_path.read_text(errors="replace").splitlines()[-lines:])

    # -- internals -----------------------------------------------------------------------------
    def _job_definition(self, ref: str) -> dict:
        if ":" in ref:  # name:revision or an ARN
            found = self._batch.describe_job_definitions(jobDefinitions=[ref])["jobDefinitions"]
        else:
            found = self._batch.describe_job_definitions(jobDefinitionName=ref, status="ACTIVE")["jobDefinitions"]
        if not found:
            raise ValueError(f"job definition {ref!r} is not registered with the Batch API: deploy the infrastructure first (odins-ravne infra deploy)")
        return max(found, key=lambda d: d.get("revision", 0))

    def _may_start(self, job: _LocalJob) -> bool:
        running = [j for j in self._jobs.values() if j.status in ("STARTING", "RUNNING")]
        if self._max_running is not None and len(running) >= self._max_running:
            return False
        limit = self._capacity.get(job.queue)
        return limit is None or sum(1 for j in running if j.queue == job.queue) < limit

    def _supervise(self, job: _LocalJob) -> None:
        max_attempts = int(job.strategy.get("attempts", 1))
        attempt = 0
        while True:
            with self._lock:
                while job.status == "RUNNABLE" and not self._may_start(job):
                    self._lock.wait(0.2)
                if job.status in FINAL_STATUSES:
                    return
                attempt += 1
                job.env["AWS_BATCH_JOB_ATTEMPT"] = str(attempt)
                job.status = "RUNNING"
                started = _now_ms()
                job.started_at = job.started_at or started
                log = job.log_path.open("ab")
                job.proc = subprocess.Popen(
                    job.command, env=job.env, cwd=self._cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
                log.close()
            code = job.proc.wait()
            with self._lock:
                stopped = _now_ms()
                if code == 0:
                    job.attempts.append(_attempt(started, stopped, 0, None, None, job.log_path))
                    self._finish(job, "SUCCEEDED", "Essential container in task exited", exit_code=0)
                    self._lock.notify_all()
                    return
                if job.terminate_reason:
                    job.attempts.append(_attempt(started, stopped, None, job.terminate_reason, job.terminate_reason, job.log_path))
                    self._finish(job, "FAILED", job.terminate_reason)
                    self._lock.notify_all()
                    return
                if code == -signal.SIGKILL:  # killed from outside: the local stand-in for a reclaimed host
                    status_reason, reason, exit_code = f"Host EC2 (instance i-local{job.proc.pid:08x}) terminated.", None, None
                else:
                    status_reason = "Essential container in task exited"
                    exit_code = code if code > 0 else 128 - code
                    reason = None
                job.attempts.append(_attempt(started, stopped, exit_code, reason, status_reason, job.log_path))
                decision = evaluate_on_exit(job.strategy, status_reason=status_reason, reason=reason, exit_code=exit_code)
                if decision == "RETRY" and attempt < max_attempts:
                    job.status, job.status_reason, job.proc = "RUNNABLE", status_reason, None
                    self._lock.notify_all()
                    continue
                self._finish(job, "FAILED", status_reason, exit_code=exit_code)
                self._lock.notify_all()
                return

    def _finish(self, job: _LocalJob, status: str, reason: str | None, exit_code: int | None = None) -> None:
        job.status, job.status_reason, job.exit_code = status, reason, exit_code
        job.stopped_at = _now_ms()
        job.proc = None


def _attempt(started: int, stopped: int, exit_code: int | None, reason: str | None, status_reason: str | None, log: Path) -> dict:
    container: dict[str, Any] = {"logStreamName": str(log)}
    if exit_code is not None:
        container["exitCode"] = exit_code
    if reason:
        container["reason"] = reason
    out = {"container": container, "startedAt": started, "stoppedAt": stopped}
    if status_reason:
        out["statusReason"] = status_reason
    return out


def _substitute(part: str, parameters: Mapping[str, str]) -> str:
    # Batch replaces a whole ``Ref::name`` argument with the parameter's value.
    if part.startswith("Ref::") and part[5:] in parameters:
        return str(parameters[part[5:]])
    return part


def _kill_group(proc: subprocess.Popen | None, grace: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)  # like Batch/ECS: SIGTERM, then SIGKILL after a grace period
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# The Pipes client
# ---------------------------------------------------------------------------------------------


@dataclass
class BatchJobRecord:
    """What one shard's Batch job did: the input of the cost resource and of the asset metadata."""

    shard_index: int
    job_id: str
    job_name: str
    queue: str
    capacity: str  # spot | on-demand
    status: str = "SUBMITTED"
    status_reason: str | None = None
    created_at: int | None = None  # epoch milliseconds, as Batch reports them
    started_at: int | None = None
    stopped_at: int | None = None
    attempts: list[dict] = field(default_factory=list)
    console_url: str = ""
    replaced_job_id: str | None = None  # the spot job this one replaced after fallback_timeout

    @property
    def runtime_seconds(self) -> float:
        return billable_seconds(self.attempts, self.started_at, self.stopped_at)


def billable_seconds(attempts: Sequence[Mapping], started_at: int | None = None, stopped_at: int | None = None) -> float:
    """Seconds a job was billed: the sum over its attempts (a reclaimed attempt was paid for too).

    Times are Batch's epoch milliseconds; without attempt times, the job's own start and stop.
    """
    spans = [(a.get("startedAt"), a.get("stoppedAt")) for a in attempts or []]
    complete = [(start, stop) for start, stop in spans if start is not None and stop is not None]
    if complete:
        return max(sum(stop - start for start, stop in complete) / 1000, 0.0)
    if started_at is not None and stopped_at is not None:
        return max((stopped_at - started_at) / 1000, 0.0)
    return 0.0


@dataclass
class _Shard:
    index: int
    extras: dict
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    session: Any = None
    record: BatchJobRecord | None = None
    submit_params: dict | None = None
    runnable_since: float | None = None
    last_status: str | None = None
    invocation: PipesClientCompletedInvocation | None = None
    error: str | None = None


@dataclass
class BatchRun:
    """The outcome of :meth:`PipesBatchClient.run_shards`: one Pipes invocation and job per shard."""

    invocations: list[PipesClientCompletedInvocation]
    jobs: list[BatchJobRecord]

    @property
    def metadata(self) -> dict[str, Any]:
        jobs = self.jobs
        out: dict[str, Any] = {
            "batch_jobs": len(jobs),
            "batch_job_ids": MetadataValue.json([j.job_id for j in jobs]),
            "batch_statuses": MetadataValue.json({j.job_id: j.status for j in jobs}),
            "batch_spot_jobs": sum(1 for j in jobs if j.capacity == "spot"),
            "batch_fallbacks_to_on_demand": sum(1 for j in jobs if j.replaced_job_id),
            "batch_attempts": sum(len(j.attempts) for j in jobs),
            "batch_runtime_seconds": round(sum(j.runtime_seconds for j in jobs), 3),
        }
        if jobs:
            out["batch_console_url"] = MetadataValue.url(jobs[0].console_url)
        return out

    def get_materialize_result(self) -> MaterializeResult:
        """One result for the asset: shard-reported numbers summed, the rest from the last shard."""
        merged: dict[str, Any] = {}
        for invocation in self.invocations:
            result = invocation.get_materialize_result()
            for key, value in (result.metadata or {}).items():
                raw = getattr(value, "value", value)
                if key in merged and isinstance(raw, (int, float)) and not isinstance(raw, bool):
                    previous = getattr(merged[key], "value", merged[key])
                    merged[key] = previous + raw if isinstance(previous, (int, float)) else raw
                else:
                    merged[key] = raw if isinstance(raw, (int, float, str)) else value
        merged.update(self.metadata)
        return MaterializeResult(metadata=merged)


class _PrefixedS3MessageReader(PipesS3MessageReader):
    """``PipesS3MessageReader`` that keeps its message chunks under ``prefix`` (``pipes/``), where
    the bucket's lifecycle rule expires them, instead of at a random key in the bucket's root."""

    def __init__(self, *, prefix: str, **kwargs: Any):
        super().__init__(**kwargs)
        self._prefix = prefix.rstrip("/")

    @contextlib.contextmanager
    def get_params(self):
        with super().get_params() as params:
            yield {**params, "key_prefix": f"{self._prefix}/messages/{params['key_prefix']}"}


class _Backoff:
    def __init__(self, initial: float, maximum: float, factor: float = 2.0):
        self.initial, self.maximum, self.factor = initial, maximum, factor
        self.current = initial

    def next(self, changed: bool) -> float:
        self.current = self.initial if changed else min(self.current * self.factor, self.maximum)
        return self.current


class PipesBatchClient(PipesClient, TreatAsResourceParam):
    """Run ``gpu_ops`` (or any Pipes-speaking command) as AWS Batch jobs.

    Args:
        bucket: S3 bucket for the Pipes context and message chunks (under ``key_prefix``).
        client / s3_client / logs_client: boto3 clients; default ones honour ``AWS_ENDPOINT_URL``.
        fallback_job_queue: on-demand queue for jobs left RUNNABLE on the (spot) queue too long.
        fallback_timeout: seconds RUNNABLE before that move; None turns the fallback off.
        max_parallel_jobs: shards in flight at once.
        poll_interval / max_poll_interval: ``describe_jobs`` backoff bounds in seconds.
        message_interval: seconds between reads of the Pipes message chunks in S3.
        spot_queue: whether ``jobQueue`` runs on spot (recorded per job for the cost resource).
        runner: a :class:`LocalBatchRunner`; default from ``ODINS_RAVNE_BATCH_RUNNER``.
    """

    def __init__(
        self,
        *,
        bucket: str,
        key_prefix: str = "pipes/",
        client: Any = None,
        s3_client: Any = None,
        logs_client: Any = None,
        fallback_job_queue: str | None = None,
        fallback_timeout: float | None = 300,
        max_parallel_jobs: int = 10,
        poll_interval: float = 5.0,
        max_poll_interval: float = 60.0,
        message_interval: float = 10.0,
        spot_queue: bool = True,
        forward_termination: bool = True,
        runner: LocalBatchRunner | None = None,
        region: str | None = None,
    ):
        if max_parallel_jobs < 1:
            raise ValueError(f"max_parallel_jobs must be at least 1, got {max_parallel_jobs}")
        self._client = client or aws_client("batch", region=region)
        self._s3 = s3_client or aws_client("s3", region=region)
        self._logs = logs_client
        self.bucket = bucket
        self.key_prefix = key_prefix
        self.fallback_job_queue = fallback_job_queue
        self.fallback_timeout = fallback_timeout
        self.max_parallel_jobs = max_parallel_jobs
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.message_interval = message_interval
        self.spot_queue = spot_queue
        self.forward_termination = forward_termination
        self.runner = runner if runner is not None else LocalBatchRunner.from_env(self._client)
        self._clusters: dict[str, str] | None = None  # ECS cluster name -> spot | on-demand
        self.region = self._client.meta.region_name

    @classmethod
    def from_profile(cls, profile: Any, *, bucket: str | None = None, **overrides: Any) -> "PipesBatchClient":
        """Build from ``profiles/*.yaml`` (``cloud.aws``); the bucket falls back to ``$ODINS_RAVNE_BUCKET``."""
        aws = profile.cloud.aws
        bucket = bucket or aws.bucket or os.environ.get("ODINS_RAVNE_BUCKET")
        if not bucket:
            raise ValueError("no S3 bucket for Batch jobs: set cloud.aws.bucket in the profile or ODINS_RAVNE_BUCKET")
        compute = aws.compute
        kwargs: dict[str, Any] = dict(
            bucket=bucket,
            fallback_job_queue=aws.ondemand_job_queue if compute.fallback_to_ondemand else None,
            fallback_timeout=compute.fallback_timeout if compute.fallback_to_ondemand else None,
            max_parallel_jobs=aws.max_parallel_jobs,
            spot_queue=compute.spot_instances,
            region=profile.storage.region,
        )
        kwargs.update(overrides)
        return cls(**kwargs)

    # -- public API ------------------------------------------------------------------------------
    def run(  # type: ignore[override]
        self,
        *,
        context: Any,
        submit_job_params: Mapping[str, Any],
        extras: Mapping[str, Any] | None = None,
    ) -> PipesClientCompletedInvocation:
        """Submit one job, wait for it, return its Pipes results (``PipesClient`` interface)."""
        return self.run_shards(context=context, submit_job_params=submit_job_params, extras=extras).invocations[0]

    def run_shards(
        self,
        *,
        context: Any,
        submit_job_params: Mapping[str, Any],
        shard_extras: Sequence[Mapping[str, Any]] | None = None,
        extras: Mapping[str, Any] | None = None,
    ) -> BatchRun:
        """One job per entry of ``shard_extras`` (merged over ``extras``), at most ``max_parallel_jobs`` at once.

        When a shard fails no further shards are submitted, the ones in flight finish (their work
        is checkpointed), and :class:`BatchJobFailed` names every failed shard.
        """
        for key in ("jobName", "jobQueue", "jobDefinition"):
            if not submit_job_params.get(key):
                raise ValueError(f"submit_job_params needs '{key}' (see boto3 Batch submit_job)")
        if self.runner is not None:
            self.runner.configure_endpoint()
        shards = [_Shard(i, {**(extras or {}), **dict(e)}) for i, e in enumerate(shard_extras or [{}])]
        waiting, active, finished = deque(shards), [], []
        backoff = _Backoff(self.poll_interval, self.max_poll_interval)
        try:
            while waiting or active:
                stop_submitting = any(s.error for s in finished)
                while waiting and len(active) < self.max_parallel_jobs and not stop_submitting:
                    shard = waiting.popleft()
                    self._start(context, shard, submit_job_params, len(shards))
                    active.append(shard)
                if stop_submitting:
                    waiting.clear()
                if not active:
                    break
                changed = self._poll(context, active)
                for shard in [s for s in active if s.record.status in FINAL_STATUSES]:
                    active.remove(shard)
                    self._close(context, shard)
                    finished.append(shard)
                if active:
                    time.sleep(backoff.next(changed))
        except (DagsterExecutionInterruptedError, KeyboardInterrupt):
            if self.forward_termination:
                context.log.warning(f"[batch] run interrupted: terminating {len(active)} Batch job(s)")
                for shard in active:
                    self._terminate(context, shard.record.job_id, "Dagster run was interrupted or cancelled")
            raise
        finally:
            for shard in shards:
                shard.stack.close()
        failed = [s for s in finished if s.error]
        if failed:
            not_launched = sum(1 for s in shards if s.record is None)
            skipped = f" ({not_launched} not launched after the failure)" if not_launched else ""
            raise BatchJobFailed(
                f"{len(failed)} of {len(shards)} Batch job(s) failed{skipped}; finished shards keep their results "
                "and a re-run redoes only the unfinished ones.\n" + "\n".join(s.error for s in failed)
            )
        return BatchRun([s.invocation for s in shards], [s.record for s in shards])

    # -- steps -------------------------------------------------------------------------------------
    def _start(self, context: Any, shard: _Shard, base_params: Mapping[str, Any], n_shards: int) -> None:
        # Pipes log calls stream live through the message chunks. Raw stdout/stderr are not folded in
        # (their chunks land after the "closed" message and Dagster warns about each); the job's log
        # tail is forwarded when it stops instead (see _forward_log).
        reader = _PrefixedS3MessageReader(bucket=self.bucket, client=self._s3, interval=self.message_interval, prefix=self.key_prefix)
        injector = PipesS3ContextInjector(bucket=self.bucket, client=self._s3, key_prefix=self.key_prefix)
        shard.session = shard.stack.enter_context(
            open_pipes_session(context=context, message_reader=reader, context_injector=injector, extras=shard.extras)
        )
        params = _with_pipes_env(base_params, shard.session.get_bootstrap_env_vars())
        if n_shards > 1:
            params["jobName"] = _job_name(f"{params['jobName']}-s{shard.index:04d}")
        tags = dict(params.get("tags") or {})
        for key, value in shard.session.default_remote_invocation_info.items():  # dagster/run-id, dagster/job
            tags[key[:128]] = str(value)[:256]
        params["tags"] = tags
        shard.submit_params = params
        shard.record = self._submit(context, shard, params, self.spot_queue)

    def _submit(self, context: Any, shard: _Shard, params: dict, spot: bool) -> BatchJobRecord:
        try:
            response = self._client.submit_job(**params)
        except botocore.exceptions.ClientError as err:
            raise BatchJobFailed(
                f"Batch refused job {params['jobName']} (queue {params['jobQueue']}, definition {params['jobDefinition']}): "
                f"{err}. If the queue or job definition does not exist, deploy the stack (odins-ravne infra deploy) "
                "or fix cloud.aws.job_queue / job_definition in the profile."
            ) from err
        job_id = response["jobId"]
        if self.runner is not None:
            self.runner.launch(job_id, params)
        queue = str(params["jobQueue"]).rsplit("/", 1)[-1]
        record = BatchJobRecord(
            shard_index=shard.index,
            job_id=job_id,
            job_name=params["jobName"],
            queue=queue,
            capacity="spot" if spot else "on-demand",
            console_url=batch_job_console_url(self.region, job_id),
        )
        shard.runnable_since = None
        shard.last_status = None
        context.log.info(f"[batch] submitted {record.job_name} as job {job_id} to queue {queue} ({record.capacity}): {record.console_url}")
        return record

    def _describe(self, job_ids: list[str]) -> dict[str, dict]:
        described: dict[str, dict] = {}
        for start in range(0, len(job_ids), 100):  # describe_jobs takes at most 100 ids
            for job in self._client.describe_jobs(jobs=job_ids[start : start + 100])["jobs"]:
                described[job["jobId"]] = job
        if self.runner is not None:
            for job_id in job_ids:
                local = self.runner.describe(job_id)
                if local is not None:
                    described[job_id] = {**described.get(job_id, {}), **local, "jobId": job_id}
        return described

    def _poll(self, context: Any, active: list[_Shard]) -> bool:
        described = self._describe([s.record.job_id for s in active])
        changed = False
        now = time.monotonic()
        for shard in active:
            job = described.get(shard.record.job_id)
            if job is None:
                continue
            record = shard.record
            record.status = job["status"]
            record.status_reason = job.get("statusReason")
            record.created_at = job.get("createdAt", record.created_at)
            record.started_at = job.get("startedAt", record.started_at)
            record.stopped_at = job.get("stoppedAt", record.stopped_at)
            record.attempts = list(job.get("attempts") or [])
            placed = self._capacity_of(job)
            if placed:
                record.capacity = placed
            if record.status != shard.last_status:
                changed = True
                context.log.info(
                    f"[batch] job {record.job_id} ({record.job_name}): {shard.last_status or 'SUBMITTED'} -> {record.status}"
                    + (f" ({record.status_reason})" if record.status_reason and record.status != "SUCCEEDED" else "")
                )
                shard.last_status = record.status
                shard.runnable_since = now if record.status == "RUNNABLE" else None
            if record.status == "RUNNABLE" and self._should_fall_back(shard, now):
                self._fall_back(context, shard)
                changed = True
            elif record.status == "FAILED":
                shard.error = self._failure_message(record)
        return changed

    def _capacity_of(self, job: Mapping) -> str | None:
        """Spot or on-demand, from the compute environment the job actually landed in.

        The spot queue also lists the on-demand environment (used when spot is at its vCPU limit),
        so the queue alone does not say what the job was billed at. The container instance ARN
        names the ECS cluster, and each compute environment has its own cluster.
        """
        arn = (job.get("container") or {}).get("containerInstanceArn") or ""
        if not arn.startswith("arn:") or "/" not in arn:
            return None  # not placed yet (or a stand-in that does not place jobs)
        cluster = arn.split("/")[1] if arn.count("/") >= 2 else ""
        if self._clusters is None:
            self._clusters = {}
            try:
                for env in self._client.describe_compute_environments()["computeEnvironments"]:
                    kind = (env.get("computeResources") or {}).get("type", "")
                    name = str(env.get("ecsClusterArn", "")).rsplit("/", 1)[-1]
                    if name:
                        self._clusters[name] = "spot" if kind in ("SPOT", "FARGATE_SPOT") else "on-demand"
            except botocore.exceptions.ClientError:
                pass  # not allowed to describe: keep the queue's capacity
        return self._clusters.get(cluster)

    def _should_fall_back(self, shard: _Shard, now: float) -> bool:
        return (
            self.fallback_job_queue is not None
            and self.fallback_timeout is not None
            and shard.record.replaced_job_id is None
            and shard.record.queue != self.fallback_job_queue.rsplit("/", 1)[-1]
            and shard.runnable_since is not None
            and now - shard.runnable_since >= self.fallback_timeout
        )

    def _fall_back(self, context: Any, shard: _Shard) -> None:
        old = shard.record
        reason = f"RUNNABLE for more than {self.fallback_timeout:g}s on {old.queue}: moving to on-demand queue {self.fallback_job_queue}"
        context.log.warning(f"[batch] job {old.job_id}: {reason}")
        self._terminate(context, old.job_id, reason)
        # The same Pipes session carries over: a job terminated while RUNNABLE never wrote a message.
        params = dict(shard.submit_params)
        params["jobQueue"] = self.fallback_job_queue
        params["jobName"] = _job_name(f"{params['jobName']}-od")
        shard.record = self._submit(context, shard, params, spot=False)
        shard.record.replaced_job_id = old.job_id

    def _close(self, context: Any, shard: _Shard) -> None:
        record = shard.record
        metadata = {
            "batch_job_id": record.job_id,
            "batch_job_status": record.status,
            "batch_job_queue": record.queue,
            "batch_capacity": record.capacity,
            "batch_attempts": len(record.attempts),
            "batch_runtime_seconds": round(record.runtime_seconds, 3),
            "batch_console_url": MetadataValue.url(record.console_url),
        }
        if record.replaced_job_id:
            metadata["batch_replaced_spot_job_id"] = record.replaced_job_id
        self._forward_log(context, record)
        shard.stack.close()  # closing the session reads the last message chunks
        shard.invocation = PipesClientCompletedInvocation(shard.session, metadata=metadata)
        if record.status == "SUCCEEDED":
            context.log.info(f"[batch] job {record.job_id} succeeded after {len(record.attempts)} attempt(s)")

    def _terminate(self, context: Any, job_id: str, reason: str) -> None:
        try:
            self._client.terminate_job(jobId=job_id, reason=reason[:255])
        except botocore.exceptions.ClientError as err:
            context.log.warning(f"[batch] could not terminate job {job_id}: {err}")
        if self.runner is not None:
            self.runner.terminate(job_id, reason)

    def _forward_log(self, context: Any, record: BatchJobRecord) -> None:
        tail = self._log_tail(record, lines=50)
        if tail:
            context.log.info(f"[batch] job {record.job_id} output (last lines):\n{tail}")

    def _failure_message(self, record: BatchJobRecord) -> str:
        reasons = [a.get("statusReason") or (a.get("container") or {}).get("reason") for a in record.attempts]
        reasons = [r for r in reasons if r]
        exit_codes = [(a.get("container") or {}).get("exitCode") for a in record.attempts]
        lines = [
            f"- shard {record.shard_index} job {record.job_id} ({record.job_name}) FAILED: {record.status_reason or 'no status reason'}",
            f"  attempts: {len(record.attempts)}; reasons: {reasons or ['-']}; exit codes: {[c for c in exit_codes if c is not None] or ['-']}",
            f"  console: {record.console_url}",
        ]
        tail = self._log_tail(record)
        if tail:
            lines.append("  last log lines:\n" + "\n".join(f"    {line}" for line in tail.splitlines()))
        return "\n".join(lines)

    def _log_tail(self, record: BatchJobRecord, lines: int = 20) -> str:
        if self.runner is not None:
            return self.runner.log_tail(record.job_id, lines)
        stream = next(((a.get("container") or {}).get("logStreamName") for a in reversed(record.attempts)), None)
        if not stream:
            return ""
        try:
            logs = self._logs or aws_client("logs", region=self.region)
            events = logs.get_log_events(logGroupName="/aws/batch/job", logStreamName=stream, limit=lines, startFromHead=False)
            return "\n".join(e["message"] for e in events.get("events", []))
        except botocore.exceptions.ClientError:
            return ""  # the log is a convenience in the error; its absence must not hide the failure


def _with_pipes_env(params: Mapping[str, Any], pipes_env: Mapping[str, str]) -> dict:
    """Copy of submit_job params with the Pipes bootstrap variables in the container environment."""
    out = json.loads(json.dumps(dict(params)))  # deep copy; the caller's dict is reused across shards
    overrides = out.setdefault("containerOverrides", {})
    environment = [e for e in overrides.get("environment", []) if e["name"] not in pipes_env]
    environment.extend({"name": k, "value": v} for k, v in pipes_env.items())
    overrides["environment"] = environment
    return out


def _job_name(name: str) -> str:
    # Batch job names: letters, digits, '-' and '_', at most 128, starting with a letter or digit.
    cleaned = _JOB_NAME_OK.sub("-", name).lstrip("-_") or "odins-ravne"
    return cleaned[:128]


GPU_OPS_COMMAND = ["python", "-m", "gpu_ops.entrypoint"]  # the image's entrypoint; stage and camera come in the Pipes extras


def submit_params_for(profile: Any, *, job_name: str, environment: Mapping[str, str] | None = None) -> dict:
    """``submit_job`` parameters for a stage from the profile: queue, definition, retry, resources."""
    aws = profile.cloud.aws
    compute = aws.compute
    env = [{"name": k, "value": str(v)} for k, v in (environment or {}).items()]
    return {
        "jobName": _job_name(job_name),
        "jobQueue": aws.job_queue,
        "jobDefinition": aws.job_definition,
        "containerOverrides": {
            "command": list(GPU_OPS_COMMAND),
            "environment": env,
            "resourceRequirements": [
                {"type": "VCPU", "value": str(compute.vcpu)},
                {"type": "MEMORY", "value": str(compute.memory)},
                {"type": "GPU", "value": str(compute.gpu_count)},
            ],
        },
        "retryStrategy": retry_strategy_from_profile(profile),
        "propagateTags": True,
    }


def run_stage_on_batch(context: Any, *, profile: Any, extras: Mapping[str, Any], client: PipesBatchClient | None = None) -> list:
    """Run one GPU stage of one camera on Batch; returns the jobs' Pipes custom messages.

    Stage 1 (``detect``) is sharded: the camera's pending media (those no done marker lists) are cut
    into ``ceil(pending / max_images_per_job)`` shards, each shard's media keys passed in its extras
    as ``shard_keys`` next to ``shard=[index, count]``; before anything is submitted the budget
    guard projects the cost of those media and refuses a run the month's budget cannot cover.
    Stage 2 runs as one job. The jobs' costs are written to ``OUTPUT/costs/camera_id=<id>/``; the
    last message is ``{"batch": {"jobs": [...], "cost": {...}}}`` for the asset's metadata.
    """
    from resources.cost import CostResource
    from resources.sharding import plan_shards, work_state
    from gpu_ops.storage import Storage

    stage, camera_id = extras["stage"], extras["camera_id"]
    output_root = str(extras["output_root"])
    output = Storage(output_root, endpoint_url=profile.storage.endpoint_url, region=profile.storage.region)
    bucket = profile.cloud.aws.bucket or os.environ.get("ODINS_RAVNE_BUCKET")
    if not bucket and output.is_s3:
        bucket = output_root[5:].split("/", 1)[0]
    if client is None:
        quick = os.environ.get(RUNNER_ENV, "").strip().lower() == "local"
        # Jobs run on this machine with the local runner: poll like a local subprocess, not like AWS.
        speed = dict(poll_interval=0.5, max_poll_interval=5.0, message_interval=1.0) if quick else {}
        client = PipesBatchClient.from_profile(profile, bucket=bucket, **speed)
    compute = profile.cloud.aws.compute
    instance_type = compute.instance_types[0]
    capacity = "spot" if compute.spot_instances else "on-demand"
    costs = CostResource.from_profile(profile)
    shards: list[dict] = [{}]
    if stage == "detect":
        from gpu_ops.stage1 import pending_media, stage1_signature

        manifest = output.read_parquet(f"media/camera_id={camera_id}")
        if manifest is not None:
            state = work_state(output, "detect", stage1_signature(profile)[0], camera_id)
            keys = [m["sha256"] for m in pending_media(manifest, state.done())]
            guard = costs.guard(output, n_media=len(keys), instance_type=instance_type, capacity=capacity)
            context.log.info(f"[cost] {len(keys)} media to detect, projected ${guard['projected_usd']:.2f}; spent ${guard['spent_usd']:.2f} this month ({guard['spent_source']})")
            ranges = plan_shards(len(keys), profile.pipeline.stage1.max_images_per_job)
            if len(ranges) > 1:
                shards = [{"shard": [i, len(ranges)], "shard_keys": keys[r.start : r.stop]} for i, r in enumerate(ranges)]
    params = submit_params_for(profile, job_name=f"odins-ravne-{stage}-{camera_id}")
    run = client.run_shards(context=context, submit_job_params=params, shard_extras=shards, extras=extras)
    per_job = [inv.get_custom_messages() for inv in run.invocations]
    media = [sum(int(m["stats"].get("media_processed", 0)) + int(m["stats"].get("media_failed", 0)) for m in msgs if isinstance(m, dict) and "stats" in m) for msgs in per_job]
    _, summary = costs.record_jobs(output, run.jobs, camera_id=camera_id, run_id=context.run_id, stage=stage, instance_type=instance_type, media_per_job=media)
    context.log.info(f"[cost] {stage} {camera_id}: ${summary['usd']:.4f} on {summary['jobs']} job(s), ${summary['saving_usd']:.4f} saved by spot")
    messages = [m for msgs in per_job for m in msgs]
    messages.append({"batch": {"jobs": [dataclasses.asdict(j) for j in run.jobs], "cost": summary}})
    return messages


__all__ = [
    "BatchJobFailed",
    "BatchJobRecord",
    "BatchRun",
    "LocalBatchRunner",
    "PipesBatchClient",
    "billable_seconds",
    "evaluate_on_exit",
    "GPU_OPS_COMMAND",
    "run_stage_on_batch",
    "retry_strategy",
    "retry_strategy_from_profile",
    "submit_params_for",
]
