"""The one Definitions object: every asset, check, job, sensor and resource of Odins Ravne.

Deployments differ only in what is bound, and that is decided here, from the profile
(``profiles/<name>.yaml``): its ``runner.type`` picks the resources behind ``gpu_runner`` (local
subprocesses, or AWS Batch jobs with the Batch Pipes client and the cost resource) and the runner
tag on ``camera_job``. Input and output roots come from ODINS_RAVNE_INPUT and ODINS_RAVNE_OUTPUT
(local folders or s3:// URIs), resolved when a run starts.
"""

import os

from dagster import Definitions, EnvVar

from odins_ravne_assets.hugin_assets import HUGIN_ASSETS
from odins_ravne_assets.jobs import camera_job_for, project_job
from odins_ravne_assets.munin_assets import MUNIN_ASSETS
from odins_ravne_assets.sensors import new_media_sensor, project_automation_sensor
from resources.batch_local import LocalBatchRunner
from resources.batch_pipes import PipesBatchClientResource
from resources.cost import CostResource
from resources.pipeline import PipelineResource
from resources.profiles import load_profile
from resources.runner import BatchStageRunner, GpuStageRunner

PROFILE_ENV = "ODINS_RAVNE_PROFILE"


def _local_resources(profile) -> dict:
    return {"gpu_runner": GpuStageRunner(python=profile.runner.python)}


def _batch_resources(profile) -> dict:
    # ODINS_RAVNE_BATCH_RUNNER=local: jobs still go through the Batch API, and run on this machine.
    batch = PipesBatchClientResource.from_profile(
        profile, bucket=os.environ.get("ODINS_RAVNE_BUCKET"), local_runner=LocalBatchRunner.requested()
    )
    cost = CostResource.from_profile(profile)
    return {"gpu_runner": BatchStageRunner(batch=batch, cost=cost), "batch_pipes": batch, "cost": cost}


RUNNER_RESOURCES = {"local": _local_resources, "batch": _batch_resources}


def build_definitions(profile_name: str | None = None) -> Definitions:
    """The Definitions of a deployment that runs with profile ``profile_name``.

    Args:
        profile_name: a profile name (``profiles/<name>.yaml``) or a path to a profile YAML; None
            reads ODINS_RAVNE_PROFILE, default ``local``.

    Returns:
        Every asset, job and sensor, with the resources of the profile's ``runner.type`` bound: for
        ``local`` a subprocess ``gpu_runner``; for ``batch`` a Batch ``gpu_runner`` and, bound beside
        it, the Batch Pipes client (``batch_pipes``) and the cost resource (``cost``). ``camera_job``
        carries the runner tag (``odins-ravne/runner``) the production run queue limits.

    Raises:
        ProfileError: the profile does not exist or does not validate.
    """
    profile_name = profile_name or os.environ.get(PROFILE_ENV) or "local"
    profile = load_profile(profile_name)
    camera_job = camera_job_for(profile.runner.type, profile.cloud.aws.priority)
    pipeline = PipelineResource(input_root=EnvVar("ODINS_RAVNE_INPUT"), output_root=EnvVar("ODINS_RAVNE_OUTPUT"), profile=profile_name)
    return Definitions(
        assets=[*MUNIN_ASSETS, *HUGIN_ASSETS],
        jobs=[camera_job, project_job],
        # The sensor is declared against the untagged camera_job; it requests this profile's one.
        sensors=[new_media_sensor.with_updated_job(camera_job), project_automation_sensor],
        resources={"pipeline": pipeline, **RUNNER_RESOURCES[profile.runner.type](profile)},
    )


defs = build_definitions()
