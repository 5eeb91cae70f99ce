"""The one Definitions object: every asset, check, job, sensor and resource of Odins Ravne.

Environments differ only in what the resources are bound to: ODINS_RAVNE_INPUT and
ODINS_RAVNE_OUTPUT (local folders or s3:// URIs) and ODINS_RAVNE_PROFILE (profiles/<name>.yaml,
default ``local``), which decides among other things whether GPU stages run as local subprocesses or
as AWS Batch jobs.
"""

import os

from dagster import Definitions, EnvVar

from odins_ravne_assets.hugin_assets import HUGIN_ASSETS
from odins_ravne_assets.jobs import camera_job, project_job
from odins_ravne_assets.munin_assets import MUNIN_ASSETS
from odins_ravne_assets.sensors import new_media_sensor, project_after_camera_sensor
from resources.pipeline import PipelineResource
from resources.runner import GpuStageRunner

# Resolved when a run starts, not at import: `odins-ravne process --profile` switches it per call.
os.environ.setdefault("ODINS_RAVNE_PROFILE", "local")

defs = Definitions(
    assets=[*MUNIN_ASSETS, *HUGIN_ASSETS],
    jobs=[camera_job, project_job],
    sensors=[new_media_sensor, project_after_camera_sensor],
    resources={
        "pipeline": PipelineResource(
            input_root=EnvVar("ODINS_RAVNE_INPUT"),
            output_root=EnvVar("ODINS_RAVNE_OUTPUT"),
            profile=EnvVar("ODINS_RAVNE_PROFILE"),
        ),
        "gpu_runner": GpuStageRunner(),
    },
)
