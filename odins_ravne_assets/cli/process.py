"""``odins-ravne process`` and ``odins-ravne demo``: every asset for the cameras of an input root.

``process`` registers the cameras it finds as partitions of a persistent Dagster instance
($DAGSTER_HOME, default ``~/.odins_ravne/dagster_home``) and materializes every asset for them in
process, so each run also shows up in the Dagster UI opened on the same instance. The profile picks
the Definitions (which runner the GPU stages use); the input and output roots are the runs' config.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import warnings
from pathlib import Path

from odins_ravne_assets.cli.console import error, format_table

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_HOME = Path("~/.odins_ravne/dagster_home").expanduser()
# The bar is the progress display; Dagster's own console lines would tear it apart.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

SUMMARY_SQL = """
SELECT m.camera_id,
       count(*) AS media,
       count(*) FILTER (WHERE m.status = 'failed') AS failed,
       coalesce(max(d.detections), 0) AS detections,
       coalesce(max(e.events), 0) AS events,
       coalesce(max(e.species), '') AS species
FROM media m
LEFT JOIN (SELECT camera_id, count(*) AS detections FROM detections GROUP BY camera_id) d USING (camera_id)
LEFT JOIN (SELECT camera_id, count(*) AS events,
                  string_agg(DISTINCT species, ', ' ORDER BY species) AS species
           FROM events WHERE category <> 'blank' GROUP BY camera_id) e USING (camera_id)
GROUP BY m.camera_id ORDER BY m.camera_id
"""


def ensure_dagster_home() -> Path:
    """The Dagster instance folder, created with the project's dagster.yaml when new."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() and (REPO_ROOT / "dagster.yaml").exists():
        shutil.copyfile(REPO_ROOT / "dagster.yaml", config)
    os.environ["DAGSTER_HOME"] = str(home)  # picks the instance, not what a run does
    return home


def run_config(input_root: str, output_root: str, profile: str) -> dict:
    """The config of one CLI run: where the pipeline resource reads and writes, and quiet logs.

    A resource's run config replaces all of its bound config, so the profile is repeated here.
    """
    pipeline = {"input_root": str(input_root), "output_root": str(output_root), "profile": profile}
    return {**QUIET_LOGS, "resources": {"pipeline": {"config": pipeline}}}


def profile_name(profile: str | None) -> str:
    return profile or os.environ.get("ODINS_RAVNE_PROFILE") or "local"


def process(input_root: str, output_root: str, *, camera_ids: list[str] | None = None, profile: str | None = None, quiet: bool = False) -> int:
    """Materialize every asset for the cameras under ``input_root``; returns the exit code."""
    from gpu_ops.storage import Storage
    from resources.profiles import load_profile

    profile = profile_name(profile)
    settings = load_profile(profile)  # fail early on a bad profile, before any run starts
    ensure_dagster_home()
    # Preview/beta notices of Dagster APIs are for developers, not for someone processing a camera.
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", category=UserWarning, message=".*(preview|beta|superseded).*")

    from dagster import DagsterInstance
    from tqdm import tqdm

    from gpu_ops.media import media_type_for
    from odins_ravne_assets.definitions import build_definitions
    from odins_ravne_assets.jobs import CAMERA_ASSETS, PROJECT_ASSETS
    from odins_ravne_assets.partitions import InvalidCameraId, split_valid, validate_camera_id
    from odins_ravne_assets.progress import set_progress_callback

    storage = Storage(input_root, endpoint_url=settings.storage.endpoint_url, region=settings.storage.region)
    folders = storage.top_level_folders()
    root = None if storage.is_s3 else storage.local_path()
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and media_type_for(p.name)) if root and root.is_dir() else []
    if loose and not folders:
        # A single camera's folder given directly: its parent is the input root.
        parent, name = storage.local_path().parent, storage.local_path().name
        print(f"{storage.root} holds media but no camera folders: processing it as camera {name!r}", file=sys.stderr)
        return process(str(parent), output_root, camera_ids=[name], profile=profile, quiet=quiet)
    if loose:
        print(f"warning: {len(loose)} media files directly under {storage.root} are in no camera folder "
              f"and are not processed (e.g. {loose[0]!r}): put each camera's media in its own folder", file=sys.stderr)
    found, invalid = split_valid(folders)
    for name, reason in invalid.items():
        print(f"skipping folder {name!r}: {reason}", file=sys.stderr)
    if camera_ids:
        try:
            [validate_camera_id(c) for c in camera_ids]
        except InvalidCameraId as err:
            return error(str(err))
        missing = sorted(set(camera_ids) - set(found))
        if missing:
            return error(f"no camera folder {', '.join(missing)} under {storage.root}")
        found = [c for c in found if c in camera_ids]
    if not found and root is not None and not root.is_dir():
        return error(f"input folder {storage.root} does not exist")
    if not found:
        return error(f"no camera folders under {storage.root}: put each camera's media in its own folder")

    instance = DagsterInstance.get()
    known = set(instance.get_dynamic_partitions("cameras"))
    new = [c for c in found if c not in known]
    if new:
        instance.add_dynamic_partitions("cameras", new)
    defs = build_definitions(profile)
    camera_job = defs.resolve_job_def("camera_job")
    project_job = defs.resolve_job_def("project_job")

    steps = len(found) * len(CAMERA_ASSETS) + len(PROJECT_ASSETS)
    bar = tqdm(total=steps, unit="step", disable=quiet, dynamic_ncols=True)
    failed_steps: list[str] = []

    def on_step(step_key: str, ok: bool) -> None:
        bar.update(1)
        if not ok:
            failed_steps.append(step_key)

    set_progress_callback(on_step)
    started = time.perf_counter()
    failed_cameras = []
    config = run_config(input_root, output_root, profile)
    tags = {"odins-ravne/cli": "process"}
    try:
        for camera_id in found:
            bar.set_description(f"camera {camera_id}")
            result = camera_job.execute_in_process(
                partition_key=camera_id, instance=instance, raise_on_error=False, run_config=config, tags=tags
            )
            if not result.success:
                failed_cameras.append(camera_id)
        bar.set_description("project (sites, Stage 3)")
        project = project_job.execute_in_process(instance=instance, raise_on_error=False, run_config=config, tags=tags)
    finally:
        set_progress_callback(None)
        bar.close()
    elapsed = time.perf_counter() - started

    from resources.stage3 import query

    out = Storage(output_root, endpoint_url=settings.storage.endpoint_url, region=settings.storage.region)
    if project.success:
        headers, rows = query(out, SUMMARY_SQL)
        print()
        print(format_table(headers, rows))
    print(f"\n{len(found)} camera(s) in {elapsed:.1f}s; results in {out.root}")
    print(f"query them: odins-ravne query \"SELECT * FROM events\" --out {out.root}")
    if failed_cameras or not project.success:
        print(f"error: runs failed for {', '.join(failed_cameras) or 'the project assets'} "
              f"(steps: {', '.join(failed_steps)}); open the Dagster UI for the logs", file=sys.stderr)
        return 1
    return 0


def demo(sample_dir: str, output_root: str) -> int:
    from gpu_ops.weights import fetch_default_weights
    from odins_ravne_assets.sample_data import build_sample_data

    print("fetching the default detector weights (once) ...")
    fetch_default_weights()
    print(f"building sample cameras in {sample_dir} ...")
    build_sample_data(Path(sample_dir))
    code = process(sample_dir, output_root)
    if code == 0:
        print("\nopen the Dagster UI on these results: make dev  (then http://127.0.0.1:3000)")
    return code
