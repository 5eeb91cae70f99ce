"""The code location of tests/cloud/test_team_deployment.py: a stand-in for camera_job that costs nothing.

It has what the production run queue acts on, the camera partitions and the runner tag of a Batch
deployment, and a step that stays "in flight" for a few seconds, as a camera waiting on its Batch jobs
does. It imports neither the detector stack nor the assets, so each run starts in about a second.
"""

import time

from dagster import Definitions, job, op

from odins_ravne_assets.partitions import cameras

IN_FLIGHT_SECONDS = 3.0
# The tag camera_job carries in a Batch deployment (odins_ravne_assets.jobs.RUNNER_TAG); the test
# checks the two agree rather than importing the assets into every stand-in run.
BATCH_RUN_TAGS = {"odins-ravne/runner": "batch"}


@op
def wait_for_batch_jobs(context) -> None:
    context.log.info(f"camera {context.partition_key}: waiting on its Batch jobs")
    time.sleep(IN_FLIGHT_SECONDS)


@job(partitions_def=cameras, tags=BATCH_RUN_TAGS)
def camera_job():
    wait_for_batch_jobs()


defs = Definitions(jobs=[camera_job])
