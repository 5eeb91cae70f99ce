"""The folder sensor as the daemon ticks it: new cameras, new media, nothing new; and the automation
that brings the project assets up to date after cameras."""

from __future__ import annotations

from dagster import (
    AssetMaterialization,
    DagsterInstance,
    DefaultSensorStatus,
    build_sensor_context,
    evaluate_automation_conditions,
)

from media_support import ASSETS, write_jpeg
from odin_support import moto_endpoint  # noqa: F401  (a real S3 endpoint on loopback)
from odins_ravne_assets.definitions import build_definitions
from odins_ravne_assets.jobs import CAMERA_ASSETS, PROJECT_ASSETS
from odins_ravne_assets.sensors import new_media_sensor, project_automation_sensor
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
    # The runner tag comes with the job the sensor requests runs of.
    assert build_definitions("local").resolve_sensor_def("new_media_sensor").job.run_tags["odins-ravne/runner"] == "local"
    assert list(first.dynamic_partitions_requests[0].partition_keys) == ["cam-a"]
    instance.add_dynamic_partitions("cameras", ["cam-a"])
    quiet, _ = tick(instance, pipeline, first.cursor)
    assert not quiet.run_requests
    s3.put_object(Bucket="uploads", Key="season/cam-a/IMG_0003.JPG", Body=b"x")
    s3.put_object(Bucket="uploads", Key="season/cam-b/IMG_0001.JPG", Body=b"x")
    third, _ = tick(instance, pipeline, quiet.cursor)
    assert sorted(r.partition_key for r in third.run_requests) == ["cam-a", "cam-b"]
    assert third.run_requests[0].run_key != first.run_requests[0].run_key



def requested(result) -> dict[str, int]:
    return {a.key.to_user_string(): result.get_num_requested(a.key) for a in PROJECT_ASSETS if result.get_num_requested(a.key)}


def materialized(instance, assets, camera_id=None) -> None:
    for asset in assets:
        for key in asset.keys:  # a multi-asset (deployments and camera_operation) has several
            instance.report_runless_asset_event(AssetMaterialization(asset_key=key, partition=camera_id))


def test_the_project_assets_follow_the_cameras_by_automation_conditions():
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("cameras", ["cam-a", "cam-b"])
    defs = build_definitions("local")
    project = {"gps_clusters": 1, "reports": 1, "stage3_database": 1}

    first = evaluate_automation_conditions(defs=defs, instance=instance)
    assert requested(first) == {}  # no camera ran: no empty project is built

    materialized(instance, CAMERA_ASSETS, "cam-a")  # cam-b has not run: it does not hold the project back
    second = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert requested(second) == project and second.total_requested == 3

    quiet = evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
    assert quiet.total_requested == 0

    # `odins-ravne process` runs the project job itself after its cameras: nothing left to do.
    materialized(instance, CAMERA_ASSETS, "cam-b")
    materialized(instance, PROJECT_ASSETS)
    after_cli = evaluate_automation_conditions(defs=defs, instance=instance, cursor=quiet.cursor)
    assert after_cli.total_requested == 0


def test_the_automation_sensor_runs_by_default_on_the_project_assets():
    graph = build_definitions("local").resolve_asset_graph()
    assert project_automation_sensor.default_status == DefaultSensorStatus.RUNNING
    assert project_automation_sensor.asset_selection.resolve(graph) == {a.key for a in PROJECT_ASSETS}
