"""The cloud path end to end against moto, as the README runs it: deploy the stack, process a camera
from S3 to S3 with the GPU stages submitted to Batch (and executed by the local runner), read the
costs, download Stage 3 and query it, tear down (two GPU jobs, ~30 s); and a camera sharded one media a
job, one shard killed, resumed (four GPU jobs, ~40 s)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import boto3
import duckdb
import pytest
import yaml
from dagster import AssetKey, DagsterInstance

from media_support import ASSETS, write_jpeg
from odin_support import REGION, SPOT_QUEUE, client, make_batch, moto_endpoint, moto_reset  # noqa: F401
from odins_ravne_assets.definitions import build_definitions
from odins_ravne_assets.cli import odin
from gpu_ops.storage import Storage

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def cloud_profile() -> str:
    # The cloud profile exactly as shipped: as the README's commands use it.
    return "cloud"


def test_process_a_camera_on_batch_against_moto(moto_endpoint, cloud_profile, tmp_path, monkeypatch):
    import ultralytics

    from odins_ravne_assets.cli.process import process

    moto_reset(moto_endpoint)
    monkeypatch.setenv("ODINS_RAVNE_BATCH_RUNNER", "local")
    monkeypatch.setenv("ODINS_RAVNE_PROFILE", "local")  # process --profile cloud sets it; undone after the test
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))  # a private instance, made by the CLI
    photos = Path(ultralytics.__file__).parent / "assets"  # real photographs shipped in a package
    lines: list[str] = []
    with pytest.warns(UserWarning, match="not supported by moto"):
        assert odin.infra_deploy(profile=cloud_profile, image_uri="odins-ravne:gpu", echo=lines.append) == 0
    bucket = f"odins-ravne-123456789012-{REGION}"
    s3 = boto3.client("s3", region_name=REGION)
    for number, name in enumerate(("bus.jpg", "zidane.jpg")):
        s3.upload_file(str(photos / name), bucket, f"input/cam-a/IMG_{number:04d}.JPG")

    assert process(f"s3://{bucket}/input", f"s3://{bucket}/output", camera_ids=["cam-a"], profile=cloud_profile, quiet=True) == 0

    jobs = boto3.client("batch", region_name=REGION).list_jobs(jobQueue="odins-ravne-gpu-spot", jobStatus="SUCCEEDED")["jobSummaryList"]
    assert {j["jobName"] for j in jobs} == {"odins-ravne-detect-cam-a", "odins-ravne-classify-cam-a"}
    costs = Storage(f"s3://{bucket}/output").read_parquet("costs")
    assert sorted(costs["stage"].to_pylist()) == ["classify", "detect"]
    assert set(costs["capacity"].to_pylist()) == {"spot"} and min(costs["runtime_seconds"].to_pylist()) > 0

    lines.clear()
    assert odin.cost_report(output_root=f"s3://{bucket}/output", profile=cloud_profile, echo=lines.append) == 0
    assert "\ncam-a " in "\n".join(lines)
    local = tmp_path / "stage3-local"
    assert odin.stage3_download(s3_uri=f"s3://{bucket}/output", local_dir=str(local), echo=lines.append) == 0
    con = duckdb.connect(str(local / "stage3" / "odins_ravne.duckdb"), read_only=True)
    assert con.execute("select count(*) from detections where camera_id = 'cam-a'").fetchone()[0] > 0
    con.close()
    assert odin.infra_teardown(profile=cloud_profile, echo=lines.append) == 0


def _batch_job_pids() -> dict[str, int]:
    """AWS_BATCH_JOB_ID -> pid of every process on this machine that runs a Batch job (the local runner's)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours
            continue
        for item in environ:
            if item.startswith(b"AWS_BATCH_JOB_ID="):
                found[item.split(b"=", 1)[1].decode()] = int(entry.name)
    return found


def _kill_job_once_running(job_name: str, killed: dict, timeout: float = 240) -> None:
    """Stand-in for a host lost mid-job: SIGKILL the job named ``job_name`` as soon as its process runs."""
    batch = client("batch")
    deadline = time.time() + timeout
    while time.time() < deadline:
        for job_id, pid in _batch_job_pids().items():
            described = batch.describe_jobs(jobs=[job_id])["jobs"]  # only this test's moto knows its jobs
            if described and described[0]["jobName"] == job_name:
                os.kill(pid, signal.SIGKILL)
                killed.update(job_id=job_id, pid=pid)
                return
        time.sleep(0.1)


def _done_markers(bucket: str) -> dict[str, tuple]:
    """The Stage 1 checkpoint's done markers (one per committed chunk): key -> (ETag, LastModified)."""
    listed = client("s3").list_objects_v2(Bucket=bucket, Prefix="output/_work/detect/").get("Contents", [])
    return {o["Key"]: (o["ETag"], o["LastModified"]) for o in listed if "/done/" in o["Key"]}


def test_sharded_camera_rerun_redoes_only_the_killed_shard(moto_endpoint, tmp_path, monkeypatch):
    """One camera, one media a Batch job: three shards planned, submitted and run through the production
    path (stage planning, the Batch Pipes client, the local runner); the middle one is killed while it
    runs, and the re-run launches one job for that shard's media and redoes nothing else."""
    moto_reset(moto_endpoint)
    make_batch()
    bucket = "odins-ravne-shards"
    client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    photos = [("bus.jpg", 0.5), ("zidane.jpg", 0.5), ("bus.jpg", 0.3)]  # three media by content
    for number, (name, scale) in enumerate(photos):
        # An hour apart: three bursts of one frame, so no burst spans two shards.
        path = write_jpeg(ASSETS / name, tmp_path / "cards" / f"IMG_{number:04d}.JPG", when=f"2026:06:01 0{5 + number}:30:00", scale=scale)
        client("s3").upload_file(str(path), bucket, f"input/cam-a/IMG_{number:04d}.JPG")
    profile = yaml.safe_load((ROOT / "profiles" / "cloud.yaml").read_text())
    profile["pipeline"]["stage1"]["max_images_per_job"] = 1
    profile["cloud"]["aws"]["max_parallel_jobs"] = 3  # every shard in flight, so the other two finish
    profile["cloud"]["aws"]["compute"]["spot_instances"] = False  # one attempt: a lost host fails the job
    profile_path = tmp_path / "one-per-job.yaml"
    profile_path.write_text(yaml.safe_dump(profile))
    monkeypatch.setenv("ODINS_RAVNE_BATCH_RUNNER", "local")
    monkeypatch.setenv("ODINS_RAVNE_INPUT", f"s3://{bucket}/input")
    monkeypatch.setenv("ODINS_RAVNE_OUTPUT", f"s3://{bucket}/output")
    monkeypatch.delenv("ODINS_RAVNE_BUCKET", raising=False)  # the Pipes messages go to the output's bucket
    # A killed job never closes its Pipes session; Dagster would wait 10 s for its last messages.
    monkeypatch.setattr("dagster._core.pipes.utils.WAIT_FOR_LOGS_AFTER_EXECUTION_INTERVAL", 1)
    camera_job = build_definitions(str(profile_path)).resolve_job_def("camera_job")
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("cameras", ["cam-a"])

    def run():
        return camera_job.execute_in_process(
            partition_key="cam-a", instance=instance, asset_selection=[AssetKey("raw_images"), AssetKey("detections")], raise_on_error=False
        )

    killed: dict = {}
    killer = threading.Thread(target=_kill_job_once_running, args=("odins-ravne-detect-cam-a-s0001", killed), daemon=True)
    killer.start()
    first = run()
    killer.join(5)
    assert killed and not first.success
    failure = next(e for e in first.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error.to_string()
    assert "1 of 3 Batch job(s) failed" in failure and f"shard 1 job {killed['job_id']}" in failure
    finished = _done_markers(bucket)
    assert len(finished) == 2  # shards 0 and 2 committed their media; shard 1 committed nothing

    second = run()
    assert second.success
    stage1 = second.asset_materializations_for_node("detections")[0].metadata
    assert stage1["stage1_batch_jobs"].value == 1
    assert stage1["stage1_media_processed"].value == 1 and stage1["stage1_media_skipped"].value == 2
    after = _done_markers(bucket)
    assert len(after) == 3 and all(after[key] == marker for key, marker in finished.items())  # not rewritten
    manifest = Storage(f"s3://{bucket}/output").read_parquet("media/camera_id=cam-a")
    killed_media = [r["sha256"] for r in manifest.sort_by("file_path").to_pylist()][1]  # shard 1's media, in manifest order
    (new_marker,) = set(after) - set(finished)
    assert Storage(f"s3://{bucket}").read_parquet(new_marker).column("key").to_pylist() == [killed_media]
    # What was submitted to the Batch API (moto marks every job SUCCEEDED; the local runner's status is what counted).
    names = {j["jobName"] for j in client("batch").list_jobs(jobQueue=SPOT_QUEUE, jobStatus="SUCCEEDED")["jobSummaryList"]}
    assert names == {f"odins-ravne-detect-cam-a-s000{i}" for i in range(3)} | {"odins-ravne-detect-cam-a"}
