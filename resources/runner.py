"""Launch the GPU stages (``python -m gpu_ops.entrypoint``) through Dagster Pipes.

Two resources behind the one ``gpu_runner`` key: :class:`GpuStageRunner` runs the entrypoint as a
subprocess of the Dagster run (the local profile); :class:`BatchStageRunner` submits it as AWS Batch
jobs (the cloud profiles). Which one a deployment gets is decided where the Definitions are built
(:func:`odins_ravne_assets.definitions.build_definitions`), never inside a run. Either way the asset
gets the stage's logs live and its figures back as Pipes custom messages.
"""

from __future__ import annotations

import sys

from dagster import ConfigurableResource, PipesSubprocessClient

from resources.batch_pipes import PipesBatchClientResource
from resources.cost import CostResource
from resources.stage_plan import run_stage_on_batch

ENTRYPOINT = ["-m", "gpu_ops.entrypoint"]


class GpuStageRunner(ConfigurableResource):
    """GPU stages as local subprocesses; ``python``: the interpreter (default: the one running Dagster)."""

    python: str | None = None

    def run(self, context, *, stage: str, camera_id: str, pipeline, extras: dict | None = None) -> dict:
        """Run one stage of one camera; returns its figures (shards merged) for the asset's metadata."""
        payload = {
            "stage": stage,
            "camera_id": camera_id,
            "input_root": pipeline.input.root,
            "output_root": pipeline.output.root,
            "profile": pipeline.settings.to_dict(),
            **(extras or {}),
        }
        return stage_figures(self.launch(context, pipeline=pipeline, payload=payload))

    def launch(self, context, *, pipeline, payload: dict) -> list:
        """Start the stage with ``payload`` as its Pipes extras; returns its Pipes custom messages."""
        command = [self.python or sys.executable, *ENTRYPOINT]
        return PipesSubprocessClient().run(context=context, command=command, extras=payload).get_custom_messages()


class BatchStageRunner(GpuStageRunner):
    """GPU stages as AWS Batch jobs, planned (shards, budget guard, cost records) by :mod:`resources.stage_plan`."""

    batch: PipesBatchClientResource
    cost: CostResource

    def launch(self, context, *, pipeline, payload: dict) -> list:
        output = pipeline.output
        # Without a configured bucket the Pipes messages go next to an s3:// output.
        output_bucket = output.root[len("s3://") :].split("/", 1)[0] if output.is_s3 else None
        return run_stage_on_batch(
            context, profile=pipeline.settings, extras=payload, output=output, client=self.batch.get_client(output_bucket), costs=self.cost
        )


def stage_figures(messages: list) -> dict:
    """The stage's figures from its jobs' messages, with the Batch jobs' count, cost and console link."""
    stats = _merge([m["stats"] for m in messages if isinstance(m, dict) and "stats" in m])
    for message in messages:
        if isinstance(message, dict) and "batch" in message:
            batch = message["batch"]
            stats["batch_jobs"] = len(batch.get("jobs", []))
            stats.update({f"cost_{k}": v for k, v in (batch.get("cost") or {}).items() if isinstance(v, (int, float))})
            links = [j.get("console_url") for j in batch.get("jobs", []) if j.get("console_url")]
            if links:
                stats["batch_console"] = links[0]
    return stats


def _merge(stats: list[dict]) -> dict:
    """Figures of several jobs (shards) of one stage as one set: counts add, times take the max."""
    if not stats:
        return {}
    merged: dict = {}
    for figures in stats:
        for key, value in figures.items():
            if key in ("seconds", "cold_start_s", "media_total", "media_skipped"):  # same in every shard
                merged[key] = max(merged.get(key, 0.0), value)
            elif key == "frames_per_s":
                continue
            else:
                merged[key] = merged.get(key, 0) + value
    if merged.get("seconds"):
        merged["frames_per_s"] = round(merged.get("frames", 0) / merged["seconds"], 3)
    return merged
