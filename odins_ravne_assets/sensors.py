"""Sensors: new cameras and new media in the local input folder; project assets after cameras.

The folder sensor keeps, per camera, a fingerprint of its media files (count, bytes, newest change)
in its cursor. A camera whose fingerprint changed gets one run, keyed by camera and fingerprint, so a
tick that sees nothing new requests nothing, and the same change never runs twice.
"""


import hashlib
import json

from dagster import (
    DagsterRunStatus,
    RunRequest,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_status_sensor,
    sensor,
)

from gpu_ops.media import media_type_for
from odins_ravne_assets.jobs import camera_job, project_job
from odins_ravne_assets.partitions import cameras, split_valid
from resources.pipeline import PipelineResource


def camera_fingerprint(camera_storage) -> str:
    count, size, newest = 0, 0, 0.0
    for info in camera_storage.list():
        if media_type_for(info.key):
            count, size, newest = count + 1, size + info.size, max(newest, info.mtime)
    return hashlib.sha256(f"{count}:{size}:{newest}".encode()).hexdigest()[:12]


@sensor(job=camera_job, minimum_interval_seconds=30, description="New cameras and new media under the input folder.")
def new_media_sensor(context: SensorEvaluationContext, pipeline: PipelineResource):
    cursor = json.loads(context.cursor) if context.cursor else {}
    valid, invalid = split_valid(pipeline.input.top_level_folders())
    for reason in invalid.values():
        context.log.warning(reason)
    known = set(context.instance.get_dynamic_partitions(cameras.name))
    new_cameras = [c for c in valid if c not in known]
    requests = []
    for camera_id in valid:
        fingerprint = camera_fingerprint(pipeline.camera_input(camera_id))
        if cursor.get(camera_id) != fingerprint:
            cursor[camera_id] = fingerprint
            requests.append(RunRequest(partition_key=camera_id, run_key=f"{camera_id}:{fingerprint}"))
    if not requests and not new_cameras:
        return SkipReason(f"no new media in {len(valid)} cameras")
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[cameras.build_add_request(new_cameras)] if new_cameras else [],
        cursor=json.dumps(cursor, sort_keys=True),
    )


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[camera_job],
    request_job=project_job,
    description="After a camera run succeeds, refresh the sites and the Stage 3 database.",
)
def project_after_camera_sensor(context: RunStatusSensorContext):
    return RunRequest(run_key=f"after:{context.dagster_run.run_id}")
