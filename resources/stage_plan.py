"""What one GPU stage of one camera becomes on AWS Batch: its jobs, their media, the budget, the bill.

Stage 1 (``detect``) is sharded: the camera's pending media (those no done marker of the stage's
checkpoints lists, see :mod:`gpu_ops.workstate`) are cut into ``ceil(pending / max_images_per_job)``
shards. Each shard's media keys travel in its Pipes extras as ``shard_keys`` (with
``shard=[index, count]`` for the logs): in the Pipes context, an S3 object, not in the job's
environment, which Batch caps at a few KiB. Before anything is submitted the budget guard projects
the cost of those media and refuses a run the month's budget cannot cover. Stage 2 runs as one job.
The jobs' costs are written to ``OUTPUT/costs/camera_id=<id>/``.

Resuming needs no shard bookkeeping of its own: done markers name media keys (content hashes), not
positions, so a re-run shards only the keys no marker lists yet. A finished shard is not launched
again, a shard killed halfway is relaunched for exactly the media it had not committed, and media
arriving between runs do not shift finished work into a different shard.

This module does not import Dagster; the runner (:class:`resources.runner.BatchStageRunner`) hands
it the Pipes client and the cost resource.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

from gpu_ops import schemas
from gpu_ops.workstate import WorkState
from resources.batch_pipes import PipesBatchClient, batch_job_name
from resources.batch_retry import retry_strategy_from_profile
from resources.cost import CostResource

GPU_OPS_COMMAND = ["python", "-m", "gpu_ops.entrypoint"]  # the image's entrypoint; stage and camera come in the Pipes extras


def plan_shards(n_media: int, max_images_per_job: int) -> list[range]:
    """Contiguous index ranges, each at most ``max_images_per_job`` long, covering ``range(n_media)``.

    The ranges are balanced (sizes differ by at most one) so the last job is not a straggler:
    2001 media at 1000 a job become 667+667+667, not 1000+1000+1.
    """
    if max_images_per_job < 1:
        raise ValueError(f"max_images_per_job must be at least 1, got {max_images_per_job}")
    if n_media < 0:
        raise ValueError(f"n_media must not be negative, got {n_media}")
    if n_media == 0:
        return []
    count = math.ceil(n_media / max_images_per_job)
    base, extra = divmod(n_media, count)
    shards, start = [], 0
    for index in range(count):
        stop = start + base + (1 if index < extra else 0)
        shards.append(range(start, stop))
        start = stop
    return shards


def shard_extras(keys: Sequence[str], max_images_per_job: int) -> list[dict]:
    """The Pipes extras of each Batch job of a sharded stage: ``{"shard": [index, count], "shard_keys": [...]}``.

    Keys keep their order (the manifest's, by file path), so a burst's frames land in one shard.
    """
    ranges = plan_shards(len(keys), max_images_per_job)
    return [{"shard": [i, len(ranges)], "shard_keys": list(keys[r.start : r.stop])} for i, r in enumerate(ranges)]


def pending_detect_keys(output: Any, profile: Any, camera_id: str) -> list[str]:
    """The sha256s of the camera's media that Stage 1 has not committed yet, in manifest order."""
    from gpu_ops.stage1 import pending_media, stage1_signature  # imports the detector stack: only when planning

    manifest = output.read_parquet(schemas.camera_prefix("media", camera_id))
    if manifest is None:
        raise FileNotFoundError(f"camera '{camera_id}' has no media manifest under {output.uri('media')}: materialize raw_images for it first")
    state = WorkState(output, "detect", stage1_signature(profile)[0], camera_id)
    return [m["sha256"] for m in pending_media(manifest, state.done())]


def submit_params_for(profile: Any, *, job_name: str) -> dict:
    """``submit_job`` parameters for a stage from the profile: queue, definition, retry, resources."""
    aws = profile.cloud.aws
    compute = aws.compute
    return {
        "jobName": batch_job_name(job_name),
        "jobQueue": aws.job_queue,
        "jobDefinition": aws.job_definition,
        "containerOverrides": {
            "command": list(GPU_OPS_COMMAND),
            "environment": [],
            "resourceRequirements": [
                {"type": "VCPU", "value": str(compute.vcpu)},
                {"type": "MEMORY", "value": str(compute.memory)},
                {"type": "GPU", "value": str(compute.gpu_count)},
            ],
        },
        "retryStrategy": retry_strategy_from_profile(profile),
        "propagateTags": True,
    }


def run_stage_on_batch(
    context: Any, *, profile: Any, extras: Mapping[str, Any], output: Any, client: PipesBatchClient, costs: CostResource
) -> list:
    """Run one GPU stage of one camera on Batch; returns the jobs' Pipes custom messages.

    The last message is ``{"batch": {"jobs": [...], "cost": {...}}}`` for the asset's metadata.
    """
    stage, camera_id = extras["stage"], extras["camera_id"]
    compute = profile.cloud.aws.compute
    instance_type = compute.instance_types[0]
    shards: list[dict] = [{}]
    if stage == "detect":
        keys = pending_detect_keys(output, profile, camera_id)
        if not keys:
            context.log.info(f"[batch] camera {camera_id}: every media already detected; no job submitted")
            return []
        guard = costs.guard(output, n_media=len(keys), instance_type=instance_type, capacity="spot" if compute.spot_instances else "on-demand")
        context.log.info(f"[cost] {len(keys)} media to detect, projected ${guard['projected_usd']:.2f}; spent ${guard['spent_usd']:.2f} this month ({guard['spent_source']})")
        shards = shard_extras(keys, profile.pipeline.stage1.max_images_per_job)
    params = submit_params_for(profile, job_name=f"odins-ravne-{stage}-{camera_id}")
    run = client.run_shards(context=context, submit_job_params=params, shard_extras=shards, extras=extras)
    per_job = [inv.get_custom_messages() for inv in run.invocations]
    media = [sum(int(m["stats"].get("media_processed", 0)) + int(m["stats"].get("media_failed", 0)) for m in msgs if isinstance(m, dict) and "stats" in m) for msgs in per_job]
    _, summary = costs.record_jobs(output, run.jobs, camera_id=camera_id, run_id=context.run_id, stage=stage, instance_type=instance_type, media_per_job=media)
    context.log.info(f"[cost] {stage} {camera_id}: ${summary['usd']:.4f} on {summary['jobs']} job(s), ${summary['saving_usd']:.4f} saved by spot")
    messages = [m for msgs in per_job for m in msgs]
    messages.append({"batch": {"jobs": [dataclasses.asdict(j) for j in run.jobs], "cost": summary}})
    return messages
