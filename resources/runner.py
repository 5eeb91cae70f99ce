"""Launch the GPU stages (``python -m gpu_ops.entrypoint``) through Dagster Pipes.

Locally the entrypoint is a subprocess of the Dagster run; in the cloud profiles it is the command of
AWS Batch jobs (:mod:`resources.batch_pipes`). Either way the asset gets the stage's logs live and
its figures back as a Pipes custom message.
"""

from __future__ import annotations

import sys

from dagster import ConfigurableResource, PipesSubprocessClient

ENTRYPOINT = ["-m", "gpu_ops.entrypoint"]


class GpuStageRunner(ConfigurableResource):
    """``mode``: ``profile`` (follow the profile's runner.type), ``local`` or ``batch``."""

    mode: str = "profile"

    def run(self, context, *, stage: str, camera_id: str, pipeline, extras: dict | None = None) -> dict:
        profile = pipeline.settings
        mode = profile.runner.type if self.mode == "profile" else self.mode
        payload = {
            "stage": stage,
            "camera_id": camera_id,
            "input_root": pipeline.input.root,
            "output_root": pipeline.output.root,
            "profile": profile.to_dict(),
            **(extras or {}),
        }
        if mode == "local":
            command = [profile.runner.python or sys.executable, *ENTRYPOINT]
            invocation = PipesSubprocessClient().run(context=context, command=command, extras=payload)
            messages = invocation.get_custom_messages()
        elif mode == "batch":
            from resources.batch_pipes import run_stage_on_batch

            messages = run_stage_on_batch(context, profile=profile, extras=payload)
        else:
            raise ValueError(f"runner mode {mode!r}: use 'local' or 'batch'")
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
