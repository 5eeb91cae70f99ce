"""Shards: a camera of N media becomes ceil(N / max_images_per_job) Batch jobs, resumable.

The checkpoint layout is the GPU stages' own (``gpu_ops.workstate``): under
``OUTPUT/_work/<stage>/<signature>/camera_id=<id>/`` every finished chunk has a result Parquet part
(``results/<chunk>.parquet``) and then a done marker (``done/<chunk>.parquet``) listing the media keys
it covered. A shard is a list of media keys; inside its job the stage commits chunk after chunk.

Resuming therefore needs no shard bookkeeping of its own: before launching, the asset asks which keys
no done marker lists yet (:func:`pending_keys`) and shards only those. A shard that finished is not
launched again; a shard killed halfway is relaunched for exactly the chunks it had not committed;
and because markers name keys (content hashes), not positions, new media arriving between runs do
not shift finished work into a different shard.

This module does not import Dagster.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import pyarrow as pa

from gpu_ops.workstate import WorkState, work_prefix


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


def work_state(storage: Any, stage: str, signature: str, camera_id: str) -> WorkState:
    return WorkState(storage, work_prefix(stage, signature, camera_id))


def pending_keys(state: WorkState, keys: Sequence[str]) -> list[str]:
    """The keys (sorted, unique) that no done marker of this stage and signature lists yet."""
    done = state.done()
    return sorted({k for k in keys if k not in done})


def shard_extras(keys: Sequence[str], max_images_per_job: int, **common: Any) -> list[dict]:
    """Pipes extras for each shard job: ``{"shard": {"index", "count", "keys"}}`` plus ``common``.

    Keys travel in the Pipes context (an S3 object), not in the job's environment, which Batch
    caps at a few KiB per variable.
    """
    ordered = sorted(keys)
    ranges = plan_shards(len(ordered), max_images_per_job)
    return [
        {**common, "shard": {"index": i, "count": len(ranges), "keys": ordered[r.start : r.stop]}}
        for i, r in enumerate(ranges)
    ]


def merged_results(state: WorkState) -> pa.Table | None:
    """Every committed chunk's results as one table (what a single-process run would produce)."""
    return state.results()
