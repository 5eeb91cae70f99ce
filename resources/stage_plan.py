"""What a GPU stage of one or many cameras becomes on AWS Batch: its jobs, their media, the size, the budget, the bill.

Stage 1 (``detect``) is sharded: each camera's pending media (those no done marker of the stage's
checkpoints lists, see :mod:`gpu_ops.workstate`) are cut into ``ceil(pending / max_images_per_job)``
shards. Each shard's media keys travel in its Pipes extras as ``shard_keys`` (with
``shard=[index, count]`` for the logs): in the Pipes context, an S3 object, not in the job's
environment, which Batch caps at a few KiB. Before anything is submitted the budget guard projects
the cost of those media and refuses a run the month's budget cannot cover. The jobs' costs are
written to ``OUTPUT/costs/camera_id=<id>/``.

Right-sizing (:func:`right_size`): the stage's pending media pick the instance type (through the
vCPUs and memory the job requests: Batch places a job on the smallest instance of the compute
environment it fits) and Stage 1's batch size, by the profile's ``cloud.aws.right_sizing`` rules
(default: the seeds' ``optimize_resources`` thresholds). Both are recorded per job in the costs table.

Packing (:func:`pack_cameras`): a run of many cameras pays one cold start (container pull, Python
imports, model load) per *job*, not per camera. Cameras with fewer pending media than
``max_images_per_job`` are packed, whole and in order, into jobs of up to that many media; a bigger
camera is sharded on its own. A job with one camera keeps the single-camera contract (``camera_id``,
``shard_keys``); a packed job lists its cameras (``cameras: [{camera_id, shard_keys}, ...]``) and
the entrypoint runs them in one process with the model loaded once.

Resuming needs no shard bookkeeping of its own: done markers name media keys (content hashes), not
positions, so a re-run shards only the keys no marker lists yet. A finished shard is not launched
again, a shard killed halfway is relaunched for exactly the media it had not committed, and media
arriving between runs do not shift finished work into a different shard.

This module does not import Dagster; the runner (:class:`resources.runner.BatchStageRunner`) hands
it the Pipes client and the cost resource.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Mapping, Sequence

from gpu_ops import schemas
from gpu_ops.settings import INSTANCE_SHAPES, PRIORITIES
from gpu_ops.workstate import WorkState
from resources.batch_pipes import BatchJobFailed, PipesBatchClient, batch_job_name
from resources.batch_retry import retry_strategy_from_profile
from resources.cost import CostResource

GPU_OPS_COMMAND = ["python", "-m", "gpu_ops.entrypoint"]  # the image's entrypoint; stage and camera come in the Pipes extras
# A run's priority, on the run (the CLI's --priority, the UI's launchpad) or, for every run of a
# deployment, on its camera_job; without it, the profile's cloud.aws.priority.
PRIORITY_TAG = "odins-ravne/priority"
MEMORY_FOR_JOBS = 0.9  # of an instance's memory: ECS and the OS keep the rest, a job asking for all of it is never placed


@dataclasses.dataclass(frozen=True)
class Sizing:
    """What a stage's jobs run on: the instance type they are priced at, the resources they request, Stage 1's batch size."""

    instance_type: str
    batch_size: int
    vcpu: int
    memory: int
    reason: str  # recorded in the costs table's ``sizing`` column


def right_size(profile: Any, n_media: int) -> Sizing:
    """The instance type and batch size for a stage of ``n_media`` pending media.

    The first rule whose ``max_images`` the media stay under (or the last rule, which may leave it out)
    decides. Decision: a rule whose instance type the compute environment does not offer
    (``cloud.aws.compute.instance_types``) could never be placed, so the largest offered rule before it
    is used instead, and the reason says so; with right-sizing off, or no rule offered, the profile's
    own ``compute.vcpu``/``memory``, first instance type and ``stage1.batch_size`` are used.
    """
    compute = profile.cloud.aws.compute
    sizing = profile.cloud.aws.right_sizing
    own = Sizing(compute.instance_types[0], profile.pipeline.stage1.batch_size, compute.vcpu, compute.memory, "profile")
    if not sizing.enabled:
        return own
    rules = list(sizing.rules)
    index = next((i for i, r in enumerate(rules) if "max_images" not in r or n_media < r["max_images"]), len(rules) - 1)
    rule = rules[index]
    reason = f"{n_media} images: " + (f"under {rule['max_images']}" if "max_images" in rule else f"{rules[index - 1]['max_images'] if index else 0} or more")
    if rule["instance_type"] not in compute.instance_types:
        offered = [r for r in rules[:index] if r["instance_type"] in compute.instance_types]
        if not offered:
            return dataclasses.replace(own, reason=f"profile ({rule['instance_type']} is not in compute.instance_types)")
        reason += f" wants {rule['instance_type']}, not in compute.instance_types"
        rule = offered[-1]
    vcpu, memory = INSTANCE_SHAPES.get(rule["instance_type"], (rule.get("vcpu"), rule.get("memory")))
    return Sizing(
        rule["instance_type"],
        rule["batch_size"],
        rule.get("vcpu", vcpu),
        rule.get("memory", int(memory * MEMORY_FOR_JOBS)),
        f"{reason} -> {rule['instance_type']}, batch {rule['batch_size']}",
    )


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


def pack_cameras(pending: Mapping[str, Sequence[str]], max_images_per_job: int) -> list[list[dict]]:
    """The jobs of a many-camera stage: each a list of ``{"camera_id", "shard_keys"}``, at most ``max_images_per_job`` media.

    A camera with more pending media than that is sharded on its own (:func:`shard_extras`); the
    others are packed whole, in the order given, each job filled until the next camera does not fit.
    Whole cameras keep a camera's bursts and its checkpoint lease in one job. Cameras with nothing
    pending get no job.
    """
    jobs: list[list[dict]] = []
    open_job: list[dict] = []
    size = 0
    for camera_id, keys in pending.items():
        if not keys:
            continue
        if len(keys) > max_images_per_job:
            jobs.extend([{"camera_id": camera_id, "shard_keys": e["shard_keys"]}] for e in shard_extras(keys, max_images_per_job))
            continue
        if size + len(keys) > max_images_per_job:
            jobs.append(open_job)
            open_job, size = [], 0
        open_job.append({"camera_id": camera_id, "shard_keys": list(keys)})
        size += len(keys)
    if open_job:
        jobs.append(open_job)
    return jobs


def job_extras(job: Sequence[Mapping[str, Any]], index: int, count: int) -> dict:
    """One job's Pipes extras: the single-camera contract for one camera, ``cameras`` for a packed job."""
    if len(job) == 1:
        return {"camera_id": job[0]["camera_id"], "shard": [index, count], **({"shard_keys": job[0]["shard_keys"]} if "shard_keys" in job[0] else {})}
    return {"shard": [index, count], "cameras": [dict(c) for c in job]}


def pending_detect_keys(output: Any, profile: Any, camera_id: str) -> list[str]:
    """The sha256s of the camera's media that Stage 1 has not committed yet, in manifest order."""
    from gpu_ops.stage1 import pending_media, stage1_signature  # imports the detector stack: only when planning

    manifest = output.read_parquet(schemas.camera_prefix("media", camera_id))
    if manifest is None:
        raise FileNotFoundError(f"camera '{camera_id}' has no media manifest under {output.uri('media')}: materialize raw_images for it first")
    state = WorkState(output, "detect", stage1_signature(profile)[0], camera_id)
    return [m["sha256"] for m in pending_media(manifest, state.done())]


def run_priority(context: Any, profile: Any) -> str:
    """The run's priority: its ``odins-ravne/priority`` tag, else the profile's ``cloud.aws.priority``."""
    priority = context.run.tags.get(PRIORITY_TAG) or profile.cloud.aws.priority
    if priority not in PRIORITIES:
        raise ValueError(f"run tag {PRIORITY_TAG} is {priority!r}: use {' or '.join(PRIORITIES)}")
    return priority


def submit_params_for(profile: Any, *, job_name: str, sizing: Sizing | None = None, priority: str = "normal") -> dict:
    """``submit_job`` parameters for a stage from the profile: queue (by priority), definition, retry, resources (right-sized when given)."""
    aws = profile.cloud.aws
    compute = aws.compute
    vcpu, memory = (sizing.vcpu, sizing.memory) if sizing else (compute.vcpu, compute.memory)
    return {
        "jobName": batch_job_name(job_name),
        "jobQueue": aws.high_priority_job_queue if priority == "high" else aws.job_queue,
        "jobDefinition": aws.job_definition,
        "containerOverrides": {
            "command": list(GPU_OPS_COMMAND),
            "environment": [],
            "resourceRequirements": [
                {"type": "VCPU", "value": str(vcpu)},
                {"type": "MEMORY", "value": str(memory)},
                {"type": "GPU", "value": str(compute.gpu_count)},
            ],
        },
        "retryStrategy": retry_strategy_from_profile(profile),
        "propagateTags": True,
    }


def _with_batch_size(extras: Mapping[str, Any], batch_size: int) -> dict:
    """The extras with Stage 1's batch size set in the job's profile (not part of the checkpoint signature)."""
    out = dict(extras)
    out["profile"] = copy.deepcopy(extras["profile"])
    out["profile"]["pipeline"]["stage1"]["batch_size"] = batch_size
    return out


def run_stage_on_batch(
    context: Any, *, profile: Any, extras: Mapping[str, Any], output: Any, client: PipesBatchClient, costs: CostResource
) -> list:
    """Run one GPU stage of one camera on Batch (``extras`` carry its ``camera_id``); see :func:`run_cameras_on_batch`."""
    base = {k: v for k, v in extras.items() if k != "camera_id"}
    return run_cameras_on_batch(context, profile=profile, extras=base, camera_ids=[extras["camera_id"]], output=output, client=client, costs=costs)


def run_cameras_on_batch(
    context: Any, *, profile: Any, extras: Mapping[str, Any], camera_ids: Sequence[str], output: Any, client: PipesBatchClient, costs: CostResource
) -> list:
    """Run one GPU stage of ``camera_ids`` on Batch, packed into as few jobs as ``max_images_per_job`` allows.

    ``extras`` carry ``stage``, the roots and the profile. Stage 1 is planned from each camera's
    pending media (guarded, right-sized, packed); Stage 2 packs the cameras the same way by their
    crops. The jobs go to the run's priority's queue in the client's region (the output bucket's), and
    the job's profile says that region for its storage. Jobs of a failed run are priced and recorded
    too (they were billed) before the failure is raised. Returns the jobs' Pipes custom messages; the
    last is ``{"batch": {"jobs": [...], "cost": {...}}}``.
    """
    stage = extras["stage"]
    compute = profile.cloud.aws.compute
    max_per_job = profile.pipeline.stage1.max_images_per_job
    priority, region = run_priority(context, profile), client.region
    capacity = "on-demand" if priority == "high" or not compute.spot_instances else "spot"
    extras = {**extras, "profile": {**extras["profile"], "storage": {**extras["profile"]["storage"], "region": region}}}
    if stage == "detect":
        pending = {c: pending_detect_keys(output, profile, c) for c in camera_ids}
        n_media = sum(len(keys) for keys in pending.values())
        if not n_media:
            context.log.info(f"[batch] camera(s) {', '.join(camera_ids)}: every media already detected; no job submitted")
            return []
        sizing = right_size(profile, n_media)
        guard = costs.guard(output, n_media=n_media, instance_type=sizing.instance_type, capacity=capacity, region=region)
        context.log.info(
            f"[cost] {n_media} media to detect on {sizing.instance_type} (batch {sizing.batch_size}: {sizing.reason}), "
            f"projected ${guard['projected_usd']:.2f} ({guard['projection']}); spent ${guard['spent_usd']:.2f} this month ({guard['spent_source']})"
        )
        jobs = pack_cameras(pending, max_per_job)
        base = _with_batch_size(extras, sizing.batch_size)
    else:
        sizing = Sizing(compute.instance_types[0], profile.pipeline.stage2.batch_size, compute.vcpu, compute.memory, "profile")
        crops = {c: _crop_count(output, c) for c in camera_ids}
        jobs = _pack_by_count(crops, max_per_job)
        base = dict(extras)
    shards = [job_extras(job, i, len(jobs)) for i, job in enumerate(jobs)]
    name = camera_ids[0] if len(camera_ids) == 1 else f"{len(camera_ids)}-cameras"
    params = submit_params_for(profile, job_name=f"odins-ravne-{stage}-{name}", sizing=sizing, priority=priority)

    def record(run: Any) -> tuple[list, dict]:
        per_job = [inv.get_custom_messages() for inv in run.invocations]
        shares = [_job_shares(msgs, job) for msgs, job in zip(per_job, jobs)]
        _, summary = costs.record_jobs(
            output, run.jobs, run_id=context.run_id, stage=stage, instance_type=sizing.instance_type, shares=shares,
            batch_size=sizing.batch_size, sizing=sizing.reason, priority=priority, region=region,
        )
        if summary.get("metrics_error"):
            context.log.warning(f"[cost] {summary['metrics_error']}")
        return per_job, summary

    try:
        run = client.run_shards(context=context, submit_job_params=params, shard_extras=shards, extras=base)
    except BatchJobFailed as err:
        if err.run is not None and err.run.jobs:
            record(err.run)
        raise
    per_job, summary = record(run)
    context.log.info(
        f"[cost] {stage} {name}: ${summary['usd']:.4f} on {summary['jobs']} job(s) for {len(camera_ids)} camera(s), "
        f"${summary['saving_usd']:.4f} saved by spot"
    )
    messages = [m for msgs in per_job for m in msgs]
    messages.append({"batch": {"jobs": [dataclasses.asdict(j) for j in run.jobs], "cost": summary, "sizing": dataclasses.asdict(sizing)}})
    return messages


def _crop_count(output: Any, camera_id: str) -> int:
    crops = output.read_parquet(schemas.camera_prefix("crops", camera_id))
    return crops.num_rows if crops is not None else 0


def _pack_by_count(counts: Mapping[str, int], max_per_job: int) -> list[list[dict]]:
    """Stage 2's jobs: whole cameras packed by crop count (a camera over the cap runs alone, not split)."""
    jobs: list[list[dict]] = [[]]
    size = 0
    for camera_id, count in counts.items():
        if jobs[-1] and size + count > max_per_job:
            jobs.append([])
            size = 0
        jobs[-1].append({"camera_id": camera_id})
        size += count
    return jobs


def _job_shares(messages: Sequence[Any], job: Sequence[Mapping[str, Any]]) -> dict:
    """What one job did, from its Pipes messages: each camera's media and the job's cold start (paid once)."""
    figures = {m["camera_id"]: m["stats"] for m in messages if isinstance(m, dict) and "stats" in m and "camera_id" in m}
    started = [m["job"] for m in messages if isinstance(m, dict) and "job" in m]
    media = {}
    for camera in job:
        stats = figures.get(camera["camera_id"], {})
        media[camera["camera_id"]] = int(stats.get("media_processed", 0)) + int(stats.get("media_failed", 0))
    return {"media": media, "cold_start_seconds": float(started[-1].get("cold_start_s", 0.0)) if started else None}
