"""Jobs: one camera through Munin and its events; then the project-wide Hugin assets."""

from dagster import AssetSelection, define_asset_job

from odins_ravne_assets.hugin_assets import condensed_reports, gps_clusters, reports, stage3_database
from odins_ravne_assets.munin_assets import MUNIN_ASSETS
from odins_ravne_assets.partitions import cameras
from odins_ravne_assets.progress import PROGRESS_HOOKS

CAMERA_ASSETS = [*MUNIN_ASSETS, condensed_reports]
PROJECT_ASSETS = [gps_clusters, reports, stage3_database]

camera_job = define_asset_job(
    "camera_job",
    selection=AssetSelection.assets(*CAMERA_ASSETS),
    partitions_def=cameras,
    hooks=PROGRESS_HOOKS,
    description="One camera: media manifest, Stage 1 detections and crops, Stage 2 species labels, events.",
)

project_job = define_asset_job(
    "project_job",
    selection=AssetSelection.assets(*PROJECT_ASSETS),
    hooks=PROGRESS_HOOKS,
    description="Across cameras: GPS sites, reports and the Stage 3 DuckDB database.",
)
