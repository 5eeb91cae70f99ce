"""The Batch Pipes client against a moto server, with jobs executed by the local runner.

moto accepts the Batch calls (submit_job, describe_jobs, terminate_job, tags, environment) but runs
no containers here (no Docker); with ``use_docker: false`` it marks every job SUCCEEDED at once. So
the job status the client acts on comes from :class:`LocalBatchRunner`, which really runs each
submitted job's command with that job's environment: the Pipes context and messages travel through
moto's S3. Where AWS behaviour is simulated rather than observed, the test says so.
"""

from __future__ import annotations

import _thread
import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from dagster import asset, materialize

from odin_support import JOB_DEFINITION, ONDEMAND_QUEUE, SPOT_QUEUE, client, make_batch, moto_batch_without_docker, moto_endpoint, moto_reset  # noqa: F401
from gpu_ops.storage import Storage
from gpu_ops.workstate import WorkState
from resources.batch_local import LocalBatchRunner
from resources.batch_pipes import PipesBatchClient
from resources.batch_retry import evaluate_on_exit, retry_strategy
from resources.stage_plan import plan_shards, shard_extras

BUCKET = "odins-ravne-test"
JOB_SCRIPT = str(Path(__file__).resolve().parents[1] / "odin_job.py")


@pytest.fixture()
def batch(moto_endpoint, monkeypatch):
    moto_reset(moto_endpoint)
    moto_batch_without_docker(moto_endpoint)
    make_batch(retry=retry_strategy(3))
    client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    # A job that dies without closing its Pipes session makes Dagster wait 10 s for late messages.
    monkeypatch.setattr("dagster._core.pipes.utils.WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 1)
    return moto_endpoint


def make_client(runner=None, **kwargs) -> PipesBatchClient:
    batch_client = client("batch")
    defaults = dict(
        bucket=BUCKET,
        client=batch_client,
        s3_client=client("s3"),
        runner=runner or LocalBatchRunner(batch_client, grace_seconds=1),
        fallback_job_queue=ONDEMAND_QUEUE,
        fallback_timeout=None,
        poll_interval=0.1,
        max_poll_interval=0.5,
        message_interval=0.1,
    )
    defaults.update(kwargs)
    return PipesBatchClient(**defaults)


def params(**extra) -> dict:
    return {
        "jobName": "odins-ravne-detect-cam01",
        "jobQueue": SPOT_QUEUE,
        "jobDefinition": JOB_DEFINITION,
        "containerOverrides": {"command": ["python", JOB_SCRIPT], "environment": [{"name": "STAGE", "value": "detect"}]},
        **extra,
    }


def run_asset(batch_client, submit, shards, extras):
    """Materialize an asset that runs the shards; returns (run outcome, dagster result)."""
    outcome = {}

    @asset
    def detections(context):
        run = batch_client.run_shards(context=context, submit_job_params=submit, shard_extras=shards, extras=extras)
        outcome["run"] = run
        return run.get_materialize_result()

    result = materialize([detections], raise_on_error=False)
    if not result.success:
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        outcome["error"] = failure.event_specific_data.error.to_string()
    return outcome, result


def test_plan_shards_balanced_and_complete():
    assert plan_shards(0, 1000) == []
    assert plan_shards(999, 1000) == [range(0, 999)]
    shards = plan_shards(2001, 1000)
    assert [len(s) for s in shards] == [667, 667, 667]
    assert [i for s in shards for i in s] == list(range(2001))
    assert len(plan_shards(10_000, 1000)) == 10
    with pytest.raises(ValueError, match="max_images_per_job"):
        plan_shards(5, 0)


def test_retry_strategy_retries_spot_reclaims_only():
    strategy = retry_strategy(3)
    assert strategy == {
        "attempts": 3,
        "evaluateOnExit": [{"onStatusReason": "Host EC2*", "action": "RETRY"}, {"onReason": "*", "action": "EXIT"}],
    }
    reclaim = "Host EC2 (instance i-0abc123) terminated."
    assert evaluate_on_exit(strategy, status_reason=reclaim, reason=None, exit_code=None) == "RETRY"
    assert evaluate_on_exit(strategy, status_reason="Essential container in task exited", reason=None, exit_code=3) == "EXIT"
    assert evaluate_on_exit(strategy, status_reason="x", reason="OutOfMemoryError: Container killed", exit_code=137) == "EXIT"
    # Batch retries when no rule matches; moto hands actions back in lower case.
    assert evaluate_on_exit({"evaluateOnExit": [{"onExitCode": "1*", "action": "exit"}]}, status_reason=None, reason=None, exit_code=2) == "RETRY"
    with pytest.raises(ValueError, match="between 1 and 10"):
        retry_strategy(11)


def test_shards_submitted_polled_and_round_trip_through_s3(batch, tmp_path):
    ledger = tmp_path / "ledger.txt"
    keys = [f"sha{i:02d}" for i in range(5)]
    batch_client = make_client()
    shards = shard_extras(keys, 2)
    outcome, result = run_asset(
        batch_client, params(tags={"camera": "cam01"}), shards,
        {"out": str(tmp_path / "out"), "camera_id": "cam01", "ledger": str(ledger), "chunk": 2},
    )
    assert result.success, outcome.get("error")
    run = outcome["run"]
    assert [j.status for j in run.jobs] == ["SUCCEEDED"] * 3
    # What the job reported over Pipes (through S3) came back and was summed over the shards.
    mat = result.asset_materializations_for_node("detections")[0]
    assert mat.metadata["processed"].value == 5
    assert mat.metadata["batch_jobs"].value == 3
    assert mat.metadata["batch_console_url"].value.startswith("https://eu-north-1.console.aws.amazon.com/batch/")
    assert sorted(m["shard"] for inv in run.invocations for m in inv.get_custom_messages()) == [0, 1, 2]
    assert Counter(ledger.read_text().split()) == Counter(keys)
    # The Pipes exchange stays under pipes/, where the bucket's lifecycle rule expires it.
    exchanged = [o["Key"] for o in client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert exchanged and all(k.startswith("pipes/messages/") for k in exchanged)
    # The Batch API saw each shard with the Pipes bootstrap in its environment and the Dagster tags.
    described = client("batch").describe_jobs(jobs=[j.job_id for j in run.jobs])["jobs"]
    assert {d["jobName"] for d in described} == {f"odins-ravne-detect-cam01-s000{i}" for i in range(3)}
    for job in described:
        env = {e["name"] for e in job["container"]["environment"]}
        assert {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES", "STAGE"} <= env
        assert job["tags"]["camera"] == "cam01" and "dagster/run-id" in job["tags"]


def test_spot_reclaim_is_retried_by_the_retry_strategy(batch, tmp_path):
    # moto cannot reclaim a spot host. Simulated: the first attempt's process dies of SIGKILL, which
    # the local runner reports as Batch does a reclaim ("Host EC2 (instance ...) terminated."); the
    # job definition's retry strategy (the one the stack deploys) then decides, as Batch would.
    batch_client = make_client()
    outcome, result = run_asset(
        batch_client, params(), [{"shard_keys": ["a", "b"]}],
        {"out": str(tmp_path / "out"), "camera_id": "cam01", "ledger": str(tmp_path / "l"), "mode": "reclaim_once"},
    )
    assert result.success, outcome.get("error")
    job = outcome["run"].jobs[0]
    assert job.status == "SUCCEEDED"
    assert len(job.attempts) == 2
    assert job.attempts[0]["statusReason"].startswith("Host EC2 (instance ")
    assert job.runtime_seconds > 0


def test_real_failure_is_not_retried_and_the_error_says_why(batch, tmp_path):
    batch_client = make_client()
    outcome, result = run_asset(
        batch_client, params(), [{"shard_keys": ["a"]}],
        {"out": str(tmp_path / "out"), "camera_id": "cam01", "ledger": str(tmp_path / "l"), "mode": "exit3"},
    )
    assert not result.success
    error = outcome["error"]
    assert "BatchJobFailed" in error and "1 of 1 Batch job(s) failed" in error
    assert "Essential container in task exited" in error
    assert "exit codes: [3]" in error and "attempts: 1;" in error  # EXIT rule: not retried
    assert "model file is corrupt" in error  # the job's own last log lines
    assert "console.aws.amazon.com/batch" in error


def test_shard_killed_halfway_resumes_without_redoing_finished_work(batch, tmp_path):
    out, ledger = tmp_path / "out", tmp_path / "ledger.txt"
    keys = [f"sha{i:02d}" for i in range(6)]
    extras = {"out": str(out), "camera_id": "cam01", "ledger": str(ledger), "chunk": 1, "mode": "die_after_chunk", "die_shard": 1}
    no_retry = params(retryStrategy=retry_strategy(1))
    outcome, result = run_asset(make_client(), no_retry, shard_extras(keys, 2), extras)
    assert not result.success
    assert "1 of 3 Batch job(s) failed" in outcome["error"] and "shard 1 job" in outcome["error"]
    state = WorkState(Storage(str(out)), "detect", "testsig", "cam01")
    left = [k for k in keys if k not in state.done()]
    assert left == ["sha03"]  # shard 1 committed sha02 before it died; shards 0 and 2 finished
    # Re-run: only the unfinished key is sharded and launched.
    outcome, result = run_asset(make_client(), no_retry, shard_extras(left, 2), {**extras, "mode": "ok"})
    assert result.success, outcome.get("error")
    assert len(outcome["run"].jobs) == 1
    assert Counter(ledger.read_text().split()) == Counter(keys)  # every key processed exactly once
    merged = state.results()
    assert sorted(merged.column("key").to_pylist()) == keys


def test_job_left_runnable_on_spot_moves_to_on_demand(batch, tmp_path):
    # moto does not model capacity. Simulated: the local runner gives the spot queue no capacity, so
    # the job stays RUNNABLE there as it does when no spot instance can be had.
    batch_client = client("batch")
    runner = LocalBatchRunner(batch_client, capacity={SPOT_QUEUE: 0}, grace_seconds=1)
    pipes = make_client(runner=runner, fallback_timeout=0.5)
    outcome, result = run_asset(
        pipes, params(), [{"shard_keys": ["a"]}], {"out": str(tmp_path / "out"), "camera_id": "cam01", "ledger": str(tmp_path / "l")}
    )
    assert result.success, outcome.get("error")
    job = outcome["run"].jobs[0]
    assert job.queue == ONDEMAND_QUEUE and job.capacity == "on-demand" and job.replaced_job_id
    spot_job = batch_client.describe_jobs(jobs=[job.replaced_job_id])["jobs"][0]
    assert "moving to on-demand queue" in spot_job["statusReason"]
    assert runner.describe(job.replaced_job_id)["status"] == "FAILED"
    mat = result.asset_materializations_for_node("detections")[0]
    assert mat.metadata["batch_fallbacks_to_on_demand"].value == 1


def test_interrupted_run_terminates_its_jobs(batch, tmp_path):
    batch_client = client("batch")
    runner = LocalBatchRunner(batch_client, grace_seconds=1)
    pipes = make_client(runner=runner)
    seen: dict = {}

    def interrupt_once_running():
        # Stand-in for a run cancelled from the UI: the step process gets an interrupt while it waits.
        deadline = time.time() + 30
        while time.time() < deadline:
            for job_id in list(runner._jobs):
                pid = runner.running_pid(job_id)
                if pid:
                    seen.update(job_id=job_id, pid=pid)
                    time.sleep(0.3)
                    _thread.interrupt_main()
                    return
            time.sleep(0.05)

    threading.Thread(target=interrupt_once_running, daemon=True).start()
    started = time.time()
    outcome, result = run_asset(
        pipes, params(), [{}], {"out": str(tmp_path / "out"), "camera_id": "cam01", "ledger": str(tmp_path / "l"), "mode": "sleep"}
    )
    # Dagster turns the interrupt into DagsterExecutionInterruptedError inside the step, as on cancel.
    assert not result.success and "DagsterExecutionInterruptedError" in outcome["error"]
    assert time.time() - started < 30  # the 120 s job did not run to its end
    assert runner.describe(seen["job_id"])["status"] == "FAILED"
    with pytest.raises(ProcessLookupError):
        os.kill(seen["pid"], 0)
    described = batch_client.describe_jobs(jobs=[seen["job_id"]])["jobs"][0]
    assert described["statusReason"] == "Dagster run was interrupted or cancelled"


def test_runner_env_switch_is_validated(monkeypatch):
    monkeypatch.setenv("ODINS_RAVNE_BATCH_RUNNER", "docker")
    with pytest.raises(ValueError, match="use 'local'"):
        LocalBatchRunner.requested()
    monkeypatch.setenv("ODINS_RAVNE_BATCH_RUNNER", "local")
    assert LocalBatchRunner.requested() is True
    monkeypatch.delenv("ODINS_RAVNE_BATCH_RUNNER")
    assert LocalBatchRunner.requested() is False


def test_capacity_comes_from_the_compute_environment_the_job_landed_in():
    # moto does not place jobs on container instances. Simulated: describe_compute_environments and
    # a job's containerInstanceArn in the shapes AWS returns them.
    class PlacedBatch:
        meta = type("meta", (), {"region_name": "eu-north-1"})()

        def describe_compute_environments(self):
            return {"computeEnvironments": [
                {"computeResources": {"type": "SPOT"}, "ecsClusterArn": "arn:aws:ecs:eu-north-1:1:cluster/Spot_Batch_1a2b"},
                {"computeResources": {"type": "EC2"}, "ecsClusterArn": "arn:aws:ecs:eu-north-1:1:cluster/OnDemand_Batch_3c4d"},
            ]}

    pipes = PipesBatchClient(bucket=BUCKET, client=PlacedBatch(), s3_client=object(), runner=LocalBatchRunner(object()))
    on_demand = {"container": {"containerInstanceArn": "arn:aws:ecs:eu-north-1:1:container-instance/OnDemand_Batch_3c4d/9f8e"}}
    spot = {"container": {"containerInstanceArn": "arn:aws:ecs:eu-north-1:1:container-instance/Spot_Batch_1a2b/7d6c"}}
    assert pipes._capacity_of(on_demand) == "on-demand"  # spot queue, but spot was at its vCPU limit
    assert pipes._capacity_of(spot) == "spot"
    assert pipes._capacity_of({"container": {}}) is None


def test_missing_queue_is_a_clear_error(batch, tmp_path):
    outcome, result = run_asset(make_client(), params(jobQueue="no-such-queue"), [{}], {"out": str(tmp_path), "camera_id": "c", "ledger": str(tmp_path / "l")})
    assert not result.success and "Batch refused job" in outcome["error"] and "odins-ravne infra deploy" in outcome["error"]
