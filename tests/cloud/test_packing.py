"""Packing a many-camera stage into Batch jobs: cold starts paid per job, not per camera (the plan, and ``process`` on moto)."""

from __future__ import annotations

import pytest

from gpu_ops.storage import Storage
from media_support import ASSETS, write_jpeg
from odin_support import REGION, SPOT_QUEUE, client, make_batch, moto_endpoint, moto_reset  # noqa: F401
from resources.stage_plan import job_extras, pack_cameras


def _pending(n_cameras: int, n_media: int) -> dict[str, list[str]]:
    return {f"cam-{c:02d}": [f"{c:02d}-{m:03d}" for m in range(n_media)] for c in range(n_cameras)}


def test_fifty_small_cameras_pack_into_jobs_of_up_to_max_images_per_job():
    pending = _pending(50, 20)  # 1,000 media: 50 jobs (50 cold starts) one camera a job
    assert len(pack_cameras(pending, 1000)) == 1
    jobs = pack_cameras(pending, 100)
    assert len(jobs) == 10 and all(len(job) == 5 for job in jobs)
    assert [c["camera_id"] for job in jobs for c in job] == list(pending)  # whole cameras, in order
    assert all(sum(len(c["shard_keys"]) for c in job) <= 100 for job in jobs)


def test_a_big_camera_is_sharded_alone_and_empty_cameras_get_no_job():
    pending = {"small-a": ["a1", "a2"], "big": [f"b{i}" for i in range(5)], "done": [], "small-b": ["c1"]}
    jobs = pack_cameras(pending, 3)
    assert jobs == [
        [{"camera_id": "big", "shard_keys": ["b0", "b1", "b2"]}],
        [{"camera_id": "big", "shard_keys": ["b3", "b4"]}],
        [{"camera_id": "small-a", "shard_keys": ["a1", "a2"]}, {"camera_id": "small-b", "shard_keys": ["c1"]}],
    ]


def test_one_camera_jobs_keep_the_single_camera_contract():
    (packed,) = pack_cameras({"a": ["k1"], "b": ["k2", "k3"]}, 3)
    (alone,) = pack_cameras({"a": ["k1"]}, 3)
    assert job_extras(alone, 0, 1) == {"camera_id": "a", "shard": [0, 1], "shard_keys": ["k1"]}
    assert job_extras(packed, 0, 1) == {"shard": [0, 1], "cameras": [{"camera_id": "a", "shard_keys": ["k1"]}, {"camera_id": "b", "shard_keys": ["k2", "k3"]}]}


@pytest.mark.slow
def test_process_packs_three_small_cameras_into_one_stage1_job(moto_endpoint, tmp_path, monkeypatch):
    """``process`` with the shipped cloud profile on moto (the local Batch runner executes the jobs):
    one Stage 1 job for all three cameras, whose own runs then launch no Stage 1 job, one Stage 2 job a
    camera, and every camera's detections present (~60 s: four GPU jobs)."""
    from odins_ravne_assets.cli.process import process

    moto_reset(moto_endpoint)
    make_batch()
    bucket = "odins-ravne-packing"
    client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    for camera, (name, scale) in enumerate([("bus.jpg", 0.5), ("zidane.jpg", 0.5), ("bus.jpg", 0.3)]):
        path = write_jpeg(ASSETS / name, tmp_path / f"cam-{camera}.JPG", when="2026:06:01 05:30:00", scale=scale)
        client("s3").upload_file(str(path), bucket, f"input/cam-{camera}/IMG_0000.JPG")
    monkeypatch.setenv("ODINS_RAVNE_BATCH_RUNNER", "local")
    monkeypatch.setenv("ODINS_RAVNE_PROFILE", "local")  # process --profile cloud sets it; undone after the test
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv("ODINS_RAVNE_BUCKET", raising=False)  # the Pipes messages go to the output's bucket

    assert process(f"s3://{bucket}/input", f"s3://{bucket}/output", profile="cloud", quiet=True) == 0

    names = sorted(j["jobName"] for j in client("batch").list_jobs(jobQueue=SPOT_QUEUE, jobStatus="SUCCEEDED")["jobSummaryList"])
    assert names == ["odins-ravne-classify-cam-0", "odins-ravne-classify-cam-1", "odins-ravne-classify-cam-2", "odins-ravne-detect-3-cameras"]
    costs = Storage(f"s3://{bucket}/output").read_parquet("costs").to_pylist()
    detect = [row for row in costs if row["stage"] == "detect"]
    assert sorted(row["camera_id"] for row in detect) == ["cam-0", "cam-1", "cam-2"] and len({row["job_id"] for row in detect}) == 1
    detections = Storage(f"s3://{bucket}/output").read_parquet("detections")
    assert set(detections.column("camera_id").to_pylist()) == {"cam-0", "cam-1", "cam-2"}
