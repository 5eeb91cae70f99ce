"""A stand-in for AWS Batch that executes the jobs submitted to the Batch API on this machine.

With ``ODINS_RAVNE_BATCH_RUNNER=local`` every job is still submitted to the Batch API (moto in the
tests and the README's cloud-against-moto commands), and :class:`LocalBatchRunner` then executes the
submitted job's command itself, with that job's environment and retry strategy, as a local
subprocess: the Pipes round trip through S3 is the real one. moto accepts Batch calls but runs no
containers without Docker, so without this the jobs would do nothing.

A container sees S3 and its image, nothing of the machine that submitted it, and the stand-in keeps
to that: a job whose Pipes context names an ``input_root`` or ``output_root`` that is not ``s3://``
fails as it would on Batch, before it starts (saying so), and each job runs in an empty working
folder of its own, so nothing can pass here on a path a container could not read.

This module does not import Dagster.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, decode_param

from resources.aws import aws_client, is_aws_endpoint
from resources.batch_retry import FINAL_STATUSES, evaluate_on_exit

RUNNER_ENV = "ODINS_RAVNE_BATCH_RUNNER"
ROOT_EXTRAS = ("input_root", "output_root")  # the gpu_ops entrypoint's roots, in the Pipes extras


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

    @staticmethod
    def requested() -> bool:
        """Whether ``ODINS_RAVNE_BATCH_RUNNER`` asks for submitted jobs to run here (``local``), not on Batch (unset)."""
        value = os.environ.get(RUNNER_ENV, "").strip().lower()
        if value in ("", "batch", "aws"):
            return False
        if value == "local":
            return True
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
        unreachable = self._local_roots(env)
        with self._lock:
            self._jobs[job_id] = job
            if unreachable:
                reason = (f"CannotStartContainerError: the job's {unreachable} is not on S3, and a Batch container "
                          "sees only S3: stage the input first (odins-ravne batch) or give s3:// roots")
                job.log_path.write_text(reason + "\n")
                now = _now_ms()
                job.started_at = now
                job.attempts.append(_attempt(now, now, None, reason, reason, job.log_path))
                self._finish(job, "FAILED", reason)
                return
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

    def _local_roots(self, env: Mapping[str, str]) -> str | None:
        """``input_root /x`` when the job's Pipes context (an S3 object) hands it a root that is not on S3."""
        encoded = env.get(DAGSTER_PIPES_CONTEXT_ENV_VAR)
        if not encoded:
            return None  # not a Pipes job: nothing to check
        where = decode_param(encoded)
        if "bucket" not in where:
            return None  # context passed another way than S3 (not what the Batch client does)
        s3 = aws_client("s3", region=self._batch.meta.region_name)
        extras = json.loads(s3.get_object(Bucket=where["bucket"], Key=where["key"])["Body"].read()).get("extras") or {}
        for name in ROOT_EXTRAS:
            value = extras.get(name)
            if value is not None and not str(value).startswith("s3://"):
                return f"{name} {value}"
        return None

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
                # An empty folder of its own, as a container's: a relative path to the caller's files finds nothing.
                cwd = self._cwd or tempfile.mkdtemp(prefix="workdir-", dir=self._log_dir)
                job.proc = subprocess.Popen(
                    job.command, env=job.env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
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
