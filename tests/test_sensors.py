"""The folder sensor as the daemon ticks it: new cameras, new media, nothing new."""

from __future__ import annotations

from dagster import DagsterInstance, SkipReason, build_sensor_context

from conftest import ASSETS, write_jpeg
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
    assert isinstance(again, SkipReason)

    write_jpeg(ASSETS / "zidane.jpg", source / "cam-2" / "b.jpg", scale=0.2)
    third, _ = tick(instance, pipeline, result.cursor)
    assert [r.partition_key for r in third.run_requests] == ["cam-2"]
    assert third.run_requests[0].run_key.startswith("cam-2:")
    assert not third.dynamic_partitions_requests
