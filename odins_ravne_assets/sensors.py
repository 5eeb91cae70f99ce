"""Sensors: new cameras and new media under the input root; the automation of the project assets.

``new_media_sensor`` works on whatever the input root is:

- a local folder: the cursor keeps, per camera, a fingerprint of its media files (count, bytes,
  newest change); a camera whose fingerprint changed gets one run keyed by camera and fingerprint;
- ``s3://`` with ``cloud.queue.adapter: s3``: per-camera ``StartAfter`` keys in the cursor, so a tick
  lists what is new, not what exists (:func:`resources.s3_sensor.poll_s3`);
- ``s3://`` with ``cloud.queue.adapter: sqs``: the bucket's ObjectCreated notifications, acknowledged
  only once they are run requests (:func:`resources.s3_sensor.poll_sqs`).

New camera folders become ``cameras`` partitions in the same ``SensorResult`` as their runs; a tick
that sees nothing new requests nothing, and the same upload never runs twice (stable run keys). The
runs carry the runner tag of the job they run (:func:`odins_ravne_assets.jobs.camera_job_for`).

``project_automation_sensor`` evaluates the project-wide assets' automation conditions
(:data:`odins_ravne_assets.hugin_assets.AFTER_CAMERAS`): sites, reports and Stage 3 follow the
cameras without a sensor of their own.
"""


import hashlib
import json

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from gpu_ops.media import media_type_for
from odins_ravne_assets.jobs import PROJECT_ASSETS, camera_job
from odins_ravne_assets.munin.ingest import camera_folders, media_files
from odins_ravne_assets.partitions import cameras, split_valid
from resources.pipeline import PipelineResource


def camera_fingerprint(camera_storage, output_storage) -> str:
    count, size, newest = 0, 0, 0.0
    for info in media_files(camera_storage, output_storage):
        if media_type_for(info.key):
            count, size, newest = count + 1, size + info.size, max(newest, info.mtime)
    return hashlib.sha256(f"{count}:{size}:{newest}".encode()).hexdigest()[:12]


def _local_changes(pipeline: PipelineResource, cursor: str | None) -> tuple[dict[str, str], str]:
    state = json.loads(cursor) if cursor else {}
    changed = {}
    for camera_id in camera_folders(pipeline.input, pipeline.output)[0]:  # never the output folder
        fingerprint = camera_fingerprint(pipeline.camera_input(camera_id), pipeline.output)
        if state.get(camera_id) != fingerprint:
            state[camera_id] = changed[camera_id] = fingerprint
    return {c: f"{c}:{f}" for c, f in changed.items()}, json.dumps(state, sort_keys=True)


def _s3_changes(pipeline: PipelineResource, cursor: str | None):
    from resources.aws import aws_client
    from resources.s3_sensor import poll_s3, poll_sqs, run_key_for

    settings = pipeline.settings
    bucket, _, prefix = pipeline.input.root[len("s3://") :].partition("/")
    if settings.cloud.queue.adapter == "sqs":
        if not settings.cloud.queue.queue_url:
            raise ValueError("cloud.queue.adapter is sqs but cloud.queue.queue_url is not set in the profile")
        sqs = aws_client("sqs", region=settings.storage.region, endpoint_url=settings.storage.endpoint_url)
        uploads = poll_sqs(sqs, settings.cloud.queue.queue_url, prefix, bucket=bucket)
        return {c: run_key_for(c, keys) for c, keys in uploads.items()}, cursor, uploads.ack
    s3 = aws_client("s3", region=settings.storage.region, endpoint_url=settings.storage.endpoint_url)
    found, new_cursor = poll_s3(s3, bucket, prefix, cursor, rescan_every=60)
    return {c: run_key_for(c, keys) for c, keys in found.items()}, new_cursor, None


@sensor(job=camera_job, minimum_interval_seconds=30, description="New cameras and new media under the input root.")
def new_media_sensor(context: SensorEvaluationContext, pipeline: PipelineResource):
    acknowledge = None
    if pipeline.input.is_s3:
        run_keys, cursor, acknowledge = _s3_changes(pipeline, context.cursor)
    else:
        run_keys, cursor = _local_changes(pipeline, context.cursor)
    valid, invalid = split_valid(sorted(run_keys))
    for reason in invalid.values():
        context.log.warning(reason)
    known = set(context.instance.get_dynamic_partitions(cameras.name))
    new_cameras = [c for c in valid if c not in known]
    requests = [RunRequest(partition_key=c, run_key=run_keys[c]) for c in valid]
    result = SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[cameras.build_add_request(new_cameras)] if new_cameras else [],
        cursor=cursor,
    )
    if acknowledge:  # the notifications are run requests now: SQS may forget them
        acknowledge()
    if not requests:
        return SensorResult(skip_reason=SkipReason("no new media"), cursor=cursor)
    return result


# Running from the start: a fresh `dg dev` keeps the project assets current without a click in the UI.
project_automation_sensor = AutomationConditionSensorDefinition(
    "project_automation_sensor",
    target=AssetSelection.assets(*PROJECT_ASSETS),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Refresh the sites, reports and the Stage 3 database after cameras update.",
)
