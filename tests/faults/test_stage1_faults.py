"""Stage 1 faults: a read error that clears up is retried, one that persists is left for the next run,
and only a file that does not decode is a final failure (issue 11, item 4).

The media, the manifest, the checkpoints and the detector are real; the faults are real too where
one can be made here (a file removed after ingest and put back, an object gone from a moto bucket).
One test reads through a Storage whose first reads of one file raise EIO: a disk or network hiccup
that clears up on its own cannot be produced on demand, so that one is injected.
"""

from __future__ import annotations

import errno

import pytest
from gpu_ops import media as media_io
from gpu_ops.detector_loader import load_detector
from gpu_ops.media import MediaReadError
from gpu_ops.stage1 import run_stage1, stage1_signature
from gpu_ops.storage import Storage
from gpu_ops.workstate import WorkState
from fault_media import write_video
from media_support import ASSETS, write_jpeg
from odin_support import client, moto_endpoint, moto_reset  # noqa: F401 - the moto server fixture
from odins_ravne_assets.munin.ingest import build_manifest
from resources.profiles import load_profile

PROFILE = load_profile("local")


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(media_io, "READ_BACKOFF_S", 0.01)


@pytest.fixture(scope="module")
def detector():
    return load_detector()


def _camera(root, names=("a.jpg", "b.jpg", "c.jpg")):
    """Photos ten minutes apart (no bursts), each its own content."""
    for i, name in enumerate(names):
        write_jpeg(ASSETS / "bus.jpg", root / name, when=f"2026:06:01 05:{10 * i:02d}:00", scale=0.3 + 0.05 * i)
    return root


def _ingest(camera: Storage, out: Storage, camera_id: str = "cam-f"):
    manifest, _ = build_manifest(camera, camera_id, out)
    out.write_parquet(f"media/camera_id={camera_id}/data.parquet", manifest)
    return {r["file_path"]: r["sha256"] for r in manifest.to_pylist()}


def _done(out: Storage, camera_id: str = "cam-f") -> dict:
    return WorkState(out, "detect", stage1_signature(PROFILE)[0], camera_id).done()


def _run(camera, out, detector, camera_id="cam-f"):
    return run_stage1(camera_id=camera_id, input_storage=camera, output_storage=out, profile=PROFILE,
                      detector_factory=lambda: detector, log=lambda m: None)


class FlakyStorage(Storage):
    """Local storage whose first ``fails`` reads of ``key`` raise EIO (an injected, passing I/O fault)."""

    def __init__(self, root, key, fails):
        super().__init__(root)
        self.key, self.fails, self.reads = key, fails, 0

    def read_bytes(self, key):
        if key == self.key:
            self.reads += 1
            if self.reads <= self.fails:
                raise OSError(errno.EIO, "Input/output error", key)
        return super().read_bytes(key)


def test_a_read_error_that_clears_up_within_the_retries_costs_nothing(tmp_path, detector):
    root, out = _camera(tmp_path / "cam-f"), Storage(str(tmp_path / "out"))
    _ingest(Storage(str(root)), out)
    flaky = FlakyStorage(str(root), "b.jpg", fails=media_io.READ_ATTEMPTS - 1)
    stats = _run(flaky, out, detector)
    assert (stats.media_processed, stats.media_failed, stats.media_unread) == (3, 0, 0)
    assert flaky.reads == media_io.READ_ATTEMPTS
    assert set(_done(out).values()) == {None}


def test_a_file_unreadable_for_the_whole_run_is_retried_by_the_next_run(tmp_path, detector):
    root, out = _camera(tmp_path / "cam-f"), Storage(str(tmp_path / "out"))
    shas = _ingest(Storage(str(root)), out)
    flaky = FlakyStorage(str(root), "b.jpg", fails=10**6)
    with pytest.raises(MediaReadError) as raised:
        _run(flaky, out, detector)
    assert str(raised.value) == (
        "camera cam-f: 1 media could not be read and are not marked done (first: b.jpg could not be read "
        "(3 tries): OSError: [Errno 5] Input/output error: 'b.jpg'); the other 2 were committed, and the next "
        "run tries these again"
    )
    done = _done(out)
    assert set(done) == {shas["a.jpg"], shas["c.jpg"]} and set(done.values()) == {None}

    again = _run(Storage(str(root)), out, detector)
    assert (again.media_skipped, again.media_processed, again.media_failed) == (2, 1, 0)
    assert set(_done(out)) == set(shas.values()) and set(_done(out).values()) == {None}


def test_a_file_that_does_not_decode_is_a_final_failure(tmp_path, detector):
    root, out = _camera(tmp_path / "cam-f"), Storage(str(tmp_path / "out"))
    shas = _ingest(Storage(str(root)), out)
    (root / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG any more")  # changed after ingest
    stats = _run(Storage(str(root)), out, detector)
    assert (stats.media_processed, stats.media_failed, stats.media_unread) == (2, 1, 0)
    # Pillow reports the bad data as an OSError: it is still the file's own failure, read without error.
    assert _done(out)[shas["b.jpg"]] == "stage 1 could not decode: Truncated File Read"
    assert _run(Storage(str(root)), out, detector).media_skipped == 3  # final: never tried again


def test_a_burst_with_an_unreadable_frame_waits_whole_for_the_next_run(tmp_path, detector):
    root, out = tmp_path / "cam-f", Storage(str(tmp_path / "out"))
    for i in range(3):  # one trigger: three frames a second apart
        write_jpeg(ASSETS / "bus.jpg", root / f"{i}.jpg", when=f"2026:06:01 05:30:0{i}", scale=0.3 + 0.05 * i)
    shas = _ingest(Storage(str(root)), out)
    with pytest.raises(MediaReadError, match="3 media could not be read"):
        _run(FlakyStorage(str(root), "1.jpg", fails=10**6), out, detector)
    assert _done(out) == {}
    stats = _run(Storage(str(root)), out, detector)
    assert (stats.media_processed, stats.bursts_fused) == (3, 1) and set(_done(out)) == set(shas.values())


def test_an_object_gone_from_s3_is_not_a_failure_of_the_file(tmp_path, detector, moto_endpoint):  # noqa: F811
    """A real S3 fault (NoSuchKey from moto) for a photo and a video: neither is committed."""
    moto_reset(moto_endpoint)  # the server is shared by the session: start from an empty account
    s3 = client("s3")
    s3.create_bucket(Bucket="cards", CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    local = _camera(tmp_path / "src")
    write_video(local / "d.mp4")
    for path in sorted(local.iterdir()):
        s3.upload_file(str(path), "cards", f"in/cam-s/{path.name}")
    camera, out = Storage("s3://cards/in/cam-s"), Storage(str(tmp_path / "out"))
    shas = _ingest(camera, out, "cam-s")
    for name in ("b.jpg", "d.mp4"):
        s3.delete_object(Bucket="cards", Key=f"in/cam-s/{name}")
    with pytest.raises(MediaReadError, match=r"camera cam-s: 2 media .* \(first: b.jpg could not be read \(3 tries\): NoSuchKey"):
        _run(camera, out, detector, "cam-s")
    assert set(_done(out, "cam-s")) == {shas["a.jpg"], shas["c.jpg"]}
    for name in ("b.jpg", "d.mp4"):
        s3.upload_file(str(local / name), "cards", f"in/cam-s/{name}")
    again = _run(camera, out, detector, "cam-s")
    assert (again.media_processed, again.media_failed) == (2, 0) and again.frames == 1 + 2  # b, and two frames of d


@pytest.mark.slow
def test_the_detections_asset_fails_and_the_next_run_picks_the_file_up(tmp_path):
    """Through Dagster: a photo removed after ingest (a card unmounted mid-run) fails the asset with the
    line that names it; put back, the next materialization detects it and nothing is lost."""
    from dagster import DagsterInstance, materialize

    from odins_ravne_assets.jobs import CAMERA_ASSETS
    from resources.pipeline import PipelineResource
    from resources.runner import GpuStageRunner

    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("cameras", ["cam-d"])
    source, out = tmp_path / "in", tmp_path / "out"
    _camera(source / "cam-d")
    resources = {"pipeline": PipelineResource(input_root=str(source), output_root=str(out)), "gpu_runner": GpuStageRunner()}
    assert materialize([CAMERA_ASSETS[0]], partition_key="cam-d", instance=instance, resources=resources).success
    (source / "cam-d" / "b.jpg").rename(tmp_path / "b.jpg")
    failed = materialize(CAMERA_ASSETS[:2], partition_key="cam-d", instance=instance, resources=resources,
                         raise_on_error=False, selection=["detections"])
    assert not failed.success
    logs = "\n".join(e.message or "" for e in instance.all_logs(failed.run_id))
    assert "camera cam-d: 1 media could not be read and are not marked done (first: b.jpg could not be read (3 tries): FileNotFoundError" in logs
    (tmp_path / "b.jpg").rename(source / "cam-d" / "b.jpg")
    again = materialize(CAMERA_ASSETS[:2], partition_key="cam-d", instance=instance, resources=resources, selection=["detections"])
    meta = again.asset_materializations_for_node("detections")[0].metadata
    assert (meta["stage1_media_skipped"].value, meta["stage1_media_processed"].value, meta["stage1_media_failed"].value) == (2, 1, 0)
