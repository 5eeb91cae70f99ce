"""The GPU job: ``python -m gpu_ops.entrypoint``, launched by Dagster Pipes.

The same command runs as a local subprocess (the local profile) and as the command of an AWS Batch
job (the cloud profiles). Everything it needs arrives in the Pipes context extras:

``stage``        ``detect`` (Stage 1: detections and crops) or ``classify`` (Stage 2)
``camera_id``    the camera partition
``input_root``   where the camera folders are (local path or ``s3://``)
``output_root``  where tables, crops and checkpoints go
``profile``      the profile as a dict (:func:`gpu_ops.settings.profile_from_dict`)
``shard_keys``   optional: the sha256s of this job's share of the camera's pending media
``cameras``      instead of ``camera_id``/``shard_keys``: a packed job's cameras, each
                 ``{"camera_id": ..., "shard_keys": [...]}``, run one after the other in this process
                 with the model loaded once (:mod:`resources.stage_plan` packs them)

Logs stream back through Pipes; each camera's figures come back as one custom message
(``{"stage", "camera_id", "stats"}``), then the job's cold start as ``{"job": {...}}``. Bootstrap
parameters that name an S3 bucket (as the Batch client writes them) make it read its context from S3
and write its messages to S3; otherwise the defaults (a temp file / env) are used.
"""

from __future__ import annotations

import os
import sys

from dagster_pipes import (
    DAGSTER_PIPES_CONTEXT_ENV_VAR,
    PipesContext,
    PipesDefaultContextLoader,
    PipesDefaultMessageWriter,
    decode_param,
    open_dagster_pipes,
)

from gpu_ops.settings import profile_from_dict
from gpu_ops.storage import open_storage


def _pipes_io():
    """S3 context loader and message writer when the bootstrap points at a bucket, else defaults."""
    raw = os.environ.get(DAGSTER_PIPES_CONTEXT_ENV_VAR)
    params = decode_param(raw) if raw else {}
    if "bucket" in params:
        import boto3
        from dagster_pipes import PipesS3ContextLoader, PipesS3MessageWriter

        client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
        return PipesS3ContextLoader(client=client), PipesS3MessageWriter(client=client, interval=5)
    return PipesDefaultContextLoader(), PipesDefaultMessageWriter()


def seconds_since_process_start() -> float:
    """Seconds since this process started (Linux ``/proc``; 0 elsewhere): interpreter and import time count as cold start."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            return max(float(uptime.read().split()[0]) - started_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return 0.0


def run(pipes: PipesContext) -> dict:
    """Run the stage for the job's camera (or each camera of a packed job); returns figures per camera."""
    extras = pipes.extras
    profile = profile_from_dict(extras["profile"])
    startup_s = seconds_since_process_start()
    if "cameras" in extras:
        cameras = extras["cameras"]
    else:
        cameras = [{"camera_id": extras["camera_id"], **({"shard_keys": extras["shard_keys"]} if extras.get("shard_keys") is not None else {})}]
    models: list = []  # loaded by the first camera with work, reused warm by the others
    figures = {}
    for camera in cameras:
        figures[camera["camera_id"]] = run_camera(pipes, profile, extras, camera, models)
    model_s = getattr(models[0], "cold_start_s", 0.0) if models else 0.0
    pipes.report_custom_message({"job": {"cameras": len(cameras), "startup_s": round(startup_s, 3), "cold_start_s": round(startup_s + model_s, 3)}})
    return figures


def _once(models: list, load):
    """A model factory that loads on the first call and hands the same model to every later one."""

    def factory():
        if not models:
            models.append(load())
        return models[0]

    return factory


def run_camera(pipes: PipesContext, profile, extras: dict, camera: dict, models: list) -> dict:
    stage = extras["stage"]
    camera_id = camera["camera_id"]
    output = open_storage(extras["output_root"], profile.storage)
    device = profile.runner.device
    # Stages import their models lazily: a Stage 2 run with the label map never loads torch.
    if stage == "detect":
        from gpu_ops.detector_loader import load_detector
        from gpu_ops.stage1 import run_stage1

        s1 = profile.pipeline.stage1
        inputs = open_storage(extras["input_root"], profile.storage).child(camera_id)
        stats = run_stage1(
            camera_id=camera_id,
            input_storage=inputs,
            output_storage=output,
            profile=profile,
            detector_factory=_once(models, lambda: load_detector(
                s1.model,
                backend=s1.backend,
                device=device,
                image_size=s1.image_size,
                conf_threshold=s1.confidence_threshold,
                iou_threshold=s1.iou_threshold,
                animal_score=s1.animal_score,
            )),
            log=pipes.log.info,
            shard_keys=camera.get("shard_keys"),
        )
    elif stage == "classify":
        from gpu_ops.classifier_loader import load_classifier
        from gpu_ops.stage2 import run_stage2

        s2 = profile.pipeline.stage2
        stats = run_stage2(
            camera_id=camera_id,
            output_storage=output,
            profile=profile,
            classifier_factory=_once(models, lambda: load_classifier(
                s2.classifier, labels=s2.labels, image_size=s2.image_size, device=device, geofence=s2.geofence
            )),
            log=pipes.log.info,
        )
    else:
        raise ValueError(f"unknown stage {stage!r}: use 'detect' or 'classify'")
    for key, reason in sorted(stats.failures.items())[:20]:
        pipes.log.warning(f"camera {camera_id}: {key[:16]} failed: {reason}")
    figures = stats.as_metadata()
    pipes.report_custom_message({"stage": stage, "camera_id": camera_id, "stats": figures})
    return figures


def main() -> int:
    loader, writer = _pipes_io()
    with open_dagster_pipes(context_loader=loader, message_writer=writer) as pipes:
        run(pipes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
