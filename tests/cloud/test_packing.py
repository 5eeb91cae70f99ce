"""Packing a many-camera stage into Batch jobs: cold starts paid per job, not per camera (plain logic, no AWS)."""

from __future__ import annotations

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
