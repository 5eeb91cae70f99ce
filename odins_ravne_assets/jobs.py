"""Jobs: one camera through Munin and its events; then the project-wide Hugin assets."""

from dagster import AssetSelection, define_asset_job

from odins_ravne_assets.hugin_assets import condensed_reports, deployments, gps_clusters, reports, stage3_database
from odins_ravne_assets.munin_assets import MUNIN_ASSETS
from odins_ravne_assets.partitions import cameras
from odins_ravne_assets.progress import PROGRESS_HOOKS
from resources.stage_plan import PRIORITY_TAG

CAMERA_ASSETS = [*MUNIN_ASSETS, deployments, condensed_reports]
PROJECT_ASSETS = [gps_clusters, reports, stage3_database]

# The tag infra/dagster.prod.yaml's run queue limits: at most 4 runs tagged `batch` at once.
RUNNER_TAG = "odins-ravne/runner"
# Dagster's own run-queue priority: a high-priority run leaves the run queue before the others.
DAGSTER_PRIORITY_TAG = "dagster/priority"


def priority_tags(priority: str) -> dict[str, str]:
    """The tags of a run of ``priority``: ours (which Batch queue, shown in the UI) and the run queue's."""
    return {PRIORITY_TAG: priority, DAGSTER_PRIORITY_TAG: "10" if priority == "high" else "0"}


def camera_job_for(runner_type: str | None, priority: str | None = None):
    """camera_job for a deployment whose GPU stages run on ``runner_type`` (the profile's runner.type).

    The runner tag is on the job, so every run of it carries the tag however it was launched (the
    CLI, a sensor, the UI's launchpad, a backfill) and the production run queue limits them all.
    ``None`` leaves the tag off: the job the sensors are declared against, before a profile is known.
    On a Batch deployment ``priority`` (the profile's cloud.aws.priority) is a tag too, which a run
    may override (``process --priority high``, or in the launchpad).
    """
    return define_asset_job(
        "camera_job",
        selection=AssetSelection.assets(*CAMERA_ASSETS),
        partitions_def=cameras,
        hooks=PROGRESS_HOOKS,
        tags={RUNNER_TAG: runner_type, **(priority_tags(priority) if runner_type == "batch" and priority else {})} if runner_type else None,
        description="One camera: media manifest, Stage 1 detections and crops, Stage 2 species labels, events.",
    )


camera_job = camera_job_for(None)

# No GPU work: its runs take no slot of the Batch limit.
project_job = define_asset_job(
    "project_job",
    selection=AssetSelection.assets(*PROJECT_ASSETS),
    hooks=PROGRESS_HOOKS,
    description="Across cameras: GPS sites, reports and the Stage 3 DuckDB database.",
)
