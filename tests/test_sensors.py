"""The folder sensor as the daemon ticks it: new cameras, new media, nothing new."""

from __future__ import annotations

from dagster import DagsterInstance, build_sensor_context

from conftest import ASSETS, write_jpeg
from odin_support import moto_endpoint  # noqa: F401  (a real S3 endpoint on loopback)
from odins_ravne_assets.sensors import new_media_sensor
from resources.pipeline import PipelineResource


def tick(instance, pipeline, cursor):
    context = build_sensor_context(instance=instance, cursor=cursor, resources={"pipeline": pipeline})
    return new_media_sensor(context), context


def test_new_cameras_register_and_new_media_request_one_run(tmp_path):
    instance = DagsterInstance.ephemeral()
    source = tmp_path / "in"
    write_jpeg(ASSETS / "bus.jpg", source / "cam-1" / "a.jpg", scale=0.2)
    write_jpeg(ASSETS / "bus.jpg", source / "cam-2" / "a.jpg", scale=0.2)
    (source / "bad name").mkdir()
    pipeline = PipelineResource(input_root=str(source), output_root=str(tmp_path / "out"))

    result, _ = tick(instance, pipeline, None)
    assert [r.partitions_def_name for r in result.dynamic_partitions_requests] == ["cameras"]
    assert list(result.dynamic_partitions_requests[0].partition_keys) == ["cam-1", "cam-2"]
    assert sorted(r.partition_key for r in result.run_requests) == ["cam-1", "cam-2"]
    instance.add_dynamic_partitions("cameras", ["cam-1", "cam-2"])

    again, _ = tick(instance, pipeline, result.cursor)
    assert not again.run_requests and again.skip_reason

    write_jpeg(ASSETS / "zidane.jpg", source / "cam-2" / "b.jpg", scale=0.2)
    third, _ = tick(instance, pipeline, result.cursor)
    assert [r.partition_key for r in third.run_requests] == ["cam-2"]
    assert third.run_requests[0].run_key.startswith("cam-2:")
    assert not third.dynamic_partitions_requests


def test_s3_uploads_are_picked_up_listing_only_what_is_new(moto_endpoint, tmp_path):
    """The same sensor on an s3:// input root (a moto server): per-camera StartAfter cursors."""
    import boto3

    s3 = boto3.client("s3", region_name="eu-north-1")
    s3.create_bucket(Bucket="uploads", CreateBucketConfiguration={"LocationConstraint": "eu-north-1"})
    for i in range(3):
        s3.put_object(Bucket="uploads", Key=f"season/cam-a/IMG_{i:04d}.JPG", Body=b"x")
    instance = DagsterInstance.ephemeral()
    pipeline = PipelineResource(input_root="s3://uploads/season", output_root=str(tmp_path / "out"))
    first, _ = tick(instance, pipeline, None)
    assert [r.partition_key for r in first.run_requests] == ["cam-a"]
    assert first.run_requests[0].tags["odins-ravne/runner"] == "local"
    assert list(first.dynamic_partitions_requests[0].partition_keys) == ["cam-a"]
    instance.add_dynamic_partitions("cameras", ["cam-a"])
    quiet, _ = tick(instance, pipeline, first.cursor)
    assert not quiet.run_requests
    s3.put_object(Bucket="uploads", Key="season/cam-a/IMG_0003.JPG", Body=b"x")
    s3.put_object(Bucket="uploads", Key="season/cam-b/IMG_0001.JPG", Body=b"x")
    third, _ = tick(instance, pipeline, quiet.cursor)
    assert sorted(r.partition_key for r in third.run_requests) == ["cam-a", "cam-b"]
    assert third.run_requests[0].run_key != first.run_requests[0].run_key
