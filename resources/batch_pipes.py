"""A Dagster Pipes client for AWS Batch: one Pipes session per job, shards in parallel, spot fallback.

dagster-aws ships Pipes clients for ECS, EMR, Glue and Lambda but none for Batch; this one follows
the shape of ``PipesECSClient``: open a Pipes session, put its bootstrap variables into the job's
container environment, ``submit_job``, wait, forward logs, terminate the job when the Dagster run is
cancelled, and put the job's id, status and console link in the metadata. What a stage runs and how
it is cut into shards is decided by the caller (:mod:`resources.stage_plan`); how Batch retries an
attempt is :mod:`resources.batch_retry`; running the jobs on this machine is :mod:`resources.batch_local`.

Choices, and why:

* Context goes to the job through S3 (``PipesS3ContextInjector``) and messages come back through S3
  (``PipesS3MessageReader``): the context of a shard lists up to ``max_images_per_job`` media, too
  much for an environment variable, and reading S3 avoids the CloudWatch ``GetLogEvents``
  throttling that ECS users of the CloudWatch reader hit.
* A camera of N media runs as several *parallel jobs*, one Pipes session each, rather than one
  array job: the children of an array job share one environment, so they would share one Pipes
  message prefix and overwrite each other's message chunks.
* At most ``max_parallel_jobs`` jobs are in flight. Beyond keeping a backfill from flooding the
  queue, it makes "RUNNABLE for longer than ``fallback_timeout``" mean "the spot pool has no
  capacity" rather than "waiting behind our own shards", so the on-demand fallback only fires when
  it should.
* Spot reclaims are retried by Batch itself (the job definition's retry strategy); this client only
  watches the attempts and reports them.
* ``describe_jobs`` is polled with exponential backoff that resets whenever a job changes state,
  so a long job costs a handful of calls an hour, and a quick one is seen finishing quickly.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import botocore.exceptions
from dagster import ConfigurableResource, MaterializeResult, MetadataValue, PipesClient
from dagster._core.definitions.resource_annotation import TreatAsResourceParam
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.pipes.client import PipesClientCompletedInvocation
from dagster._core.pipes.utils import open_pipes_session
from dagster_aws.pipes import PipesS3ContextInjector, PipesS3MessageReader

from gpu_ops.settings import HOME_REGION, StorageSettings
from resources.aws import aws_client, batch_job_console_url
from resources.batch_local import LocalBatchRunner
from resources.batch_retry import FINAL_STATUSES
from resources.cost import billable_seconds
from resources.regions import bucket_region

_JOB_NAME_OK = re.compile(r"[^A-Za-z0-9_-]")


class BatchJobFailed(RuntimeError):
    """A Batch job (or shard) ended FAILED; the message says which, why, and where to look.

    ``run`` holds the jobs that were launched (failed and finished alike): they were billed, so the
    caller records their costs before it lets the failure through.
    """

    def __init__(self, message: str, run: "BatchRun | None" = None):
        super().__init__(message)
        self.run = run



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
        runner: a :class:`LocalBatchRunner` that executes the submitted jobs here; None: Batch runs them.
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
        self.runner = runner
        self._clusters: dict[str, str] | None = None  # ECS cluster name -> spot | on-demand
        self.region = self._client.meta.region_name

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
            launched = [s for s in shards if s.record is not None]
            raise BatchJobFailed(
                f"{len(failed)} of {len(shards)} Batch job(s) failed{skipped}; finished shards keep their results "
                "and a re-run redoes only the unfinished ones.\n" + "\n".join(s.error for s in failed),
                run=BatchRun([s.invocation for s in launched], [s.record for s in launched]),
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
            params["jobName"] = batch_job_name(f"{params['jobName']}-s{shard.index:04d}")
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
        params["jobName"] = batch_job_name(f"{params['jobName']}-od")
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


def batch_job_name(name: str) -> str:
    """A valid Batch job name for ``name``: letters, digits, '-' and '_', at most 128, starting with a letter or digit."""
    # Batch job names: letters, digits, '-' and '_', at most 128, starting with a letter or digit.
    cleaned = _JOB_NAME_OK.sub("-", name).lstrip("-_") or "odins-ravne"
    return cleaned[:128]


class PipesBatchClientResource(ConfigurableResource):
    """The Batch Pipes client as a Dagster resource, configured from a profile's ``cloud.aws``.

    The client holds boto3 clients and an S3 bucket that may only be known from the run's output
    root, so the resource holds the configuration and :meth:`get_client` makes a client per stage run.
    ``local_runner`` has the submitted jobs executed on this machine (:class:`LocalBatchRunner`,
    ``ODINS_RAVNE_BATCH_RUNNER=local``), which is how the cloud path runs against moto.
    """

    region: str = HOME_REGION
    bucket: str | None = None
    key_prefix: str = "pipes/"
    fallback_job_queue: str | None = None
    fallback_timeout: float | None = 300
    max_parallel_jobs: int = 10
    poll_interval: float = 5.0
    max_poll_interval: float = 60.0
    message_interval: float = 10.0
    spot_queue: bool = True
    local_runner: bool = False

    @classmethod
    def from_profile(cls, profile: Any, *, bucket: str | None = None, local_runner: bool = False) -> "PipesBatchClientResource":
        """Queues, fallback and parallelism from ``cloud.aws``; the bucket from there, else ``bucket``."""
        aws = profile.cloud.aws
        compute = aws.compute
        # Jobs that run on this machine finish like local subprocesses: poll them like that, not like AWS.
        speed = dict(poll_interval=0.5, max_poll_interval=5.0, message_interval=1.0) if local_runner else {}
        return cls(
            region=profile.storage.region,
            bucket=aws.bucket or bucket,
            fallback_job_queue=aws.ondemand_job_queue if compute.fallback_to_ondemand else None,
            fallback_timeout=compute.fallback_timeout if compute.fallback_to_ondemand else None,
            max_parallel_jobs=aws.max_parallel_jobs,
            spot_queue=compute.spot_instances,
            local_runner=local_runner,
            **speed,
        )

    def get_client(self, default_bucket: str | None = None, *, priority: str = "normal") -> PipesBatchClient:
        """A client for one stage run; ``default_bucket`` (the output root's) when none is configured.

        The jobs run in the region of ``default_bucket`` (:mod:`resources.regions`); their Pipes
        messages go to the configured bucket when it is in that region, else to ``default_bucket``
        (the job role reaches its own region's bucket only). A ``high`` priority run submits to the
        high-priority queue, which starts on on-demand capacity: no spot fallback to watch for.
        """
        region, bucket = self.region, self.bucket or default_bucket
        if default_bucket:
            home = StorageSettings(region=self.region)
            region = bucket_region(default_bucket, home)
            if bucket != default_bucket and bucket_region(bucket, home) != region:
                bucket = default_bucket
        if not bucket:
            raise ValueError(
                "no S3 bucket for the Batch jobs' Pipes messages: set cloud.aws.bucket in the profile or "
                "ODINS_RAVNE_BUCKET, or write the output to an s3:// root"
            )
        high = priority == "high"
        batch = aws_client("batch", region=region)
        return PipesBatchClient(
            bucket=bucket,
            key_prefix=self.key_prefix,
            client=batch,
            s3_client=aws_client("s3", region=region),
            fallback_job_queue=None if high else self.fallback_job_queue,
            fallback_timeout=self.fallback_timeout,
            max_parallel_jobs=self.max_parallel_jobs,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            message_interval=self.message_interval,
            spot_queue=False if high else self.spot_queue,
            runner=LocalBatchRunner(batch) if self.local_runner else None,
        )
