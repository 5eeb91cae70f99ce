"""Materializing one camera's assets on a real Dagster instance, as the Dagster-level tests do."""

from __future__ import annotations

from pathlib import Path

from dagster import DagsterInstance, materialize

from odins_ravne_assets.jobs import CAMERA_ASSETS
from resources.pipeline import PipelineResource
from resources.runner import GpuStageRunner


def materialize_camera(camera_id: str, input_root: Path, output_root: Path, *, profile: Path | str | None = None,
                       assets=CAMERA_ASSETS, instance: DagsterInstance | None = None):
    """Materialize ``assets`` for one camera partition (registered first); the run must succeed."""
    instance = instance or DagsterInstance.ephemeral()
    if camera_id not in instance.get_dynamic_partitions("cameras"):
        instance.add_dynamic_partitions("cameras", [camera_id])
    pipeline = PipelineResource(input_root=str(input_root), output_root=str(output_root),
                                **({"profile": str(profile)} if profile is not None else {}))
    result = materialize(assets, partition_key=camera_id, instance=instance,
                         resources={"pipeline": pipeline, "gpu_runner": GpuStageRunner()})
    assert result.success
    return result
