"""``odins-ravne``: process camera folders, query the results, run the demo.

``process`` registers the cameras it finds as partitions of a persistent Dagster instance
($DAGSTER_HOME, default ``~/.odins_ravne/dagster_home``) and materializes every asset for them in
process, so each run also shows up in the Dagster UI opened on the same instance.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = Path("~/.odins_ravne/dagster_home").expanduser()


def ensure_dagster_home() -> Path:
    """The Dagster instance folder, created with the project's dagster.yaml when new."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() and (REPO_ROOT / "dagster.yaml").exists():
        shutil.copyfile(REPO_ROOT / "dagster.yaml", config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _format_table(headers: list[str], rows: list[tuple]) -> str:
    def cell(value) -> str:
        if value is None:
            return ""
        return f"{value:.6g}" if isinstance(value, float) else str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join([line, sep, *body])


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


def process(input_root: str, output_root: str, *, camera_ids: list[str] | None = None, profile: str | None = None, quiet: bool = False) -> int:
    """Materialize every asset for the cameras under ``input_root``; returns the exit code."""
    from gpu_ops.storage import Storage

    os.environ["ODINS_RAVNE_INPUT"] = str(input_root)
    os.environ["ODINS_RAVNE_OUTPUT"] = str(output_root)
    if profile:
        os.environ["ODINS_RAVNE_PROFILE"] = profile
    from resources.profiles import load_profile

    settings = load_profile(profile)  # fail early on a bad profile, before any run starts
    ensure_dagster_home()
    # Preview/beta notices of Dagster APIs are for developers, not for someone processing a camera.
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", category=UserWarning, message=".*(preview|beta|superseded).*")

    from dagster import DagsterInstance
    from tqdm import tqdm

    from gpu_ops.media import media_type_for
    from odins_ravne_assets.definitions import defs
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
            print(f"error: {err}", file=sys.stderr)
            return 2
        missing = sorted(set(camera_ids) - set(found))
        if missing:
            print(f"error: no camera folder {', '.join(missing)} under {storage.root}", file=sys.stderr)
            return 2
        found = [c for c in found if c in camera_ids]
    if not found and root is not None and not root.is_dir():
        print(f"error: input folder {storage.root} does not exist", file=sys.stderr)
        return 2
    if not found:
        print(f"error: no camera folders under {storage.root}: put each camera's media in its own folder", file=sys.stderr)
        return 2

    instance = DagsterInstance.get()
    known = set(instance.get_dynamic_partitions("cameras"))
    new = [c for c in found if c not in known]
    if new:
        instance.add_dynamic_partitions("cameras", new)
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
    # The bar is the progress display; Dagster's own console lines would tear it apart.
    run_config = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    tags = {"odins-ravne/cli": "process", "odins-ravne/runner": settings.runner.type}
    try:
        for camera_id in found:
            bar.set_description(f"camera {camera_id}")
            result = camera_job.execute_in_process(
                partition_key=camera_id, instance=instance, raise_on_error=False, run_config=run_config, tags=tags
            )
            if not result.success:
                failed_cameras.append(camera_id)
        bar.set_description("project (sites, Stage 3)")
        project = project_job.execute_in_process(instance=instance, raise_on_error=False, run_config=run_config, tags=tags)
    finally:
        set_progress_callback(None)
        bar.close()
    elapsed = time.perf_counter() - started

    from resources.stage3 import query

    out = Storage(output_root, endpoint_url=settings.storage.endpoint_url, region=settings.storage.region)
    if project.success:
        headers, rows = query(out, SUMMARY_SQL)
        print()
        print(_format_table(headers, rows))
    print(f"\n{len(found)} camera(s) in {elapsed:.1f}s; results in {out.root}")
    print(f"query them: odins-ravne query \"SELECT * FROM events\" --out {out.root}")
    if failed_cameras or not project.success:
        print(f"error: runs failed for {', '.join(failed_cameras) or 'the project assets'} "
              f"(steps: {', '.join(failed_steps)}); open the Dagster UI for the logs", file=sys.stderr)
        return 1
    return 0


def query_command(sql: str, output_root: str) -> int:
    from resources.stage3 import query
    from gpu_ops.storage import Storage

    try:
        headers, rows = query(Storage(output_root), sql)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a SQL mistake: say it plainly, no traceback
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    print(_format_table(headers, rows))
    print(f"({len(rows)} rows)")
    return 0


def _output_tables(output) -> dict:
    from gpu_ops import schemas
    from odins_ravne_assets.hugin.deployments import DEPLOYMENTS

    wanted = {**schemas.TABLES, "deployments": DEPLOYMENTS}
    tables = {name: output.read_parquet(name, empty=schema) for name, schema in wanted.items()}
    if tables["media"].num_rows == 0:
        raise FileNotFoundError(f"no results under {output.root}: run `odins-ravne process INPUT --out {output.root}` first")
    return tables


def export_command(kind: str, output_root: str, dest: str, *, camera_id: str | None = None, profile: str | None = None) -> int:
    """Write a Camtrap DP package or a MegaDetector batch output file from what `process` wrote."""
    from odins_ravne_assets.hugin.deployments import apply_clock_offsets
    from odins_ravne_assets.hugin.camtrap_dp_export import export_camtrap_dp, validate_camtrap_dp
    from odins_ravne_assets.hugin.megadetector_export import export_megadetector
    from resources.profiles import load_profile
    from gpu_ops.storage import Storage

    settings = load_profile(profile)
    try:
        t = _output_tables(Storage(output_root, endpoint_url=settings.storage.endpoint_url))
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if kind == "megadetector":
        doc = export_megadetector(dest, media=t["media"], detections=t["detections"], species_labels=t["species_labels"], camera_id=camera_id)
        print(f"wrote {dest}: {len(doc['images'])} media (MegaDetector batch output, format {doc['info'].get('format_version')})")
        return 0
    from gpu_ops import schemas

    media = apply_clock_offsets(t["media"], t["deployments"]).select(schemas.MEDIA.names)
    detections = apply_clock_offsets(t["detections"], t["deployments"]).select(schemas.DETECTIONS.names)
    result = export_camtrap_dp(
        dest, media=media, detections=detections, species_labels=t["species_labels"], events=t["events"],
        deployments=t["deployments"], clusters=t["clusters"], sensitive_species=settings.pipeline.sensitive_species,
    )
    for camera, why in sorted(result.skipped_cameras.items()):
        print(f"camera {camera} is not in the package: {why}", file=sys.stderr)
    problems = validate_camtrap_dp(result.datapackage)
    for problem in problems:
        print(f"invalid: {problem}", file=sys.stderr)
    print(f"wrote {result.datapackage} ({'valid' if not problems else f'{len(problems)} validation errors'} Camtrap DP 1.0)")
    return 1 if problems else 0


def import_command(json_path: str, input_root: str, output_root: str, camera_id: str, *, profile: str | None = None) -> int:
    """Join a MegaDetector batch output file at Stage 2: its media are not detected again."""
    from odins_ravne_assets.munin.imports import import_megadetector
    from odins_ravne_assets.partitions import InvalidCameraId, validate_camera_id
    from resources.profiles import load_profile
    from gpu_ops.storage import Storage

    try:
        validate_camera_id(camera_id)
    except InvalidCameraId as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    os.environ["ODINS_RAVNE_INPUT"], os.environ["ODINS_RAVNE_OUTPUT"] = str(input_root), str(output_root)
    if profile:
        os.environ["ODINS_RAVNE_PROFILE"] = profile
    settings = load_profile(profile)
    ensure_dagster_home()
    from dagster import AssetKey, DagsterInstance

    from odins_ravne_assets.definitions import defs

    instance = DagsterInstance.get()
    if camera_id not in instance.get_dynamic_partitions("cameras"):
        instance.add_dynamic_partitions("cameras", [camera_id])
    manifest_run = defs.resolve_job_def("camera_job").execute_in_process(
        partition_key=camera_id, instance=instance, asset_selection=[AssetKey("raw_images")], raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
    )
    if not manifest_run.success:
        print(f"error: could not build the media manifest of camera {camera_id}; see the Dagster UI", file=sys.stderr)
        return 1
    output = Storage(output_root, endpoint_url=settings.storage.endpoint_url)
    try:
        done = import_megadetector(output, camera_id, json_path, settings)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"imported {done['detections']} detections of {done['media']} media from {json_path}")
    if done["not_in_camera"]:
        print(f"warning: {len(done['not_in_camera'])} files of the JSON are not in camera {camera_id} "
              f"(e.g. {done['not_in_camera'][0]!r}): ignored", file=sys.stderr)
    return process(input_root, output_root, camera_ids=[camera_id], profile=profile)


def demo(sample_dir: str, output_root: str) -> int:
    from odins_ravne_assets.sample_data import build_sample_data
    from gpu_ops.weights import fetch_default_weights

    print("fetching the default detector weights (once) ...")
    fetch_default_weights()
    print(f"building sample cameras in {sample_dir} ...")
    build_sample_data(Path(sample_dir))
    code = process(sample_dir, output_root)
    if code == 0:
        print("\nopen the Dagster UI on these results: make dev  (then http://127.0.0.1:3000)")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="odins-ravne", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("process", help="process every camera folder under INPUT")
    p.add_argument("input", help="folder or s3:// prefix with one folder per camera")
    p.add_argument("--out", required=True, help="output folder or s3:// prefix")
    p.add_argument("--camera", action="append", dest="cameras", help="only this camera (repeatable)")
    p.add_argument("--profile", help="profile name or YAML path (default: $ODINS_RAVNE_PROFILE or local)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    q = sub.add_parser("query", help="run SQL read-only against the Stage 3 database")
    q.add_argument("sql")
    q.add_argument("--out", default=os.environ.get("ODINS_RAVNE_OUTPUT", "demo_output"), help="what process wrote")

    d = sub.add_parser("demo", help="build the sample cameras and process them")
    d.add_argument("--samples", default="sample_data")
    d.add_argument("--out", default="demo_output")

    e = sub.add_parser("export", help="standard exports of what process wrote")
    e.add_argument("format", choices=["camtrap-dp", "megadetector"])
    e.add_argument("dest", help="a folder for camtrap-dp, a .json file for megadetector")
    e.add_argument("--out", required=True, help="what process wrote (OUTPUT)")
    e.add_argument("--camera", help="megadetector: one camera's file, paths relative to its folder")
    e.add_argument("--profile")

    i = sub.add_parser("import", help="join results computed elsewhere (MegaDetector batch output) at Stage 2")
    i.add_argument("format", choices=["megadetector"])
    i.add_argument("json", help="the MegaDetector batch output file of one camera")
    i.add_argument("input", help="the folder holding the camera folders")
    i.add_argument("--camera", required=True, help="the camera the file belongs to (paths relative to its folder)")
    i.add_argument("--out", required=True)
    i.add_argument("--profile")

    infra = sub.add_parser("infra", help="the AWS stack: deploy, status, teardown (run from a checkout)")
    infra.add_argument("action", choices=["deploy", "status", "teardown"])
    infra.add_argument("--profile", default="cloud")
    infra.add_argument("--stack", default="odins-ravne")
    infra.add_argument("--image", help="deploy: the GPU image URI (ECR)")
    infra.add_argument("--subnet", action="append", default=[], help="deploy: subnet id (repeatable; default VPC when left out)")
    infra.add_argument("--security-group", action="append", default=[], help="deploy: security group id (repeatable)")
    infra.add_argument("--budget-email", help="deploy: who the AWS Budget alerts")
    infra.add_argument("--no-wait", action="store_true", help="deploy: do not wait for the stack")
    infra.add_argument("--force", action="store_true", help="teardown: even while jobs are queued or running")

    cost = sub.add_parser("cost", help="what the GPU stages cost")
    cost.add_argument("action", choices=["report"])
    cost.add_argument("--out", required=True, help="what process wrote (OUTPUT)")
    cost.add_argument("--profile", default="cloud")
    cost.add_argument("--by", default="camera_id", choices=["camera_id", "run_id", "stage", "capacity"])

    st3 = sub.add_parser("stage3", help="the Stage 3 outputs")
    st3.add_argument("action", choices=["download"])
    st3.add_argument("s3_uri", help="the s3:// OUTPUT that process wrote")
    st3.add_argument("local_dir")
    st3.add_argument("--with-crops", action="store_true", help="also copy the crop JPEGs")

    args = parser.parse_args(argv)
    if args.command == "process":
        return process(args.input, args.out, camera_ids=args.cameras, profile=args.profile, quiet=args.quiet)
    if args.command == "query":
        return query_command(args.sql, args.out)
    if args.command == "export":
        return export_command(args.format, args.out, args.dest, camera_id=args.camera, profile=args.profile)
    if args.command == "import":
        return import_command(args.json, args.input, args.out, args.camera, profile=args.profile)
    if args.command in ("infra", "cost", "stage3"):
        from resources import odin_commands

        if args.command == "infra" and args.action == "deploy":
            if not args.image:
                parser.error("infra deploy needs --image URI (the GPU image pushed to ECR)")
            return odin_commands.infra_deploy(
                profile=args.profile, image_uri=args.image, subnet_ids=args.subnet, security_group_ids=args.security_group,
                budget_email=args.budget_email or "", stack_name=args.stack, wait=not args.no_wait,
            )
        if args.command == "infra" and args.action == "status":
            return odin_commands.infra_status(profile=args.profile, stack_name=args.stack)
        if args.command == "infra":
            return odin_commands.infra_teardown(profile=args.profile, stack_name=args.stack, force=args.force)
        if args.command == "cost":
            return odin_commands.cost_report(output_root=args.out, profile=args.profile, by=args.by)
        return odin_commands.stage3_download(s3_uri=args.s3_uri, local_dir=args.local_dir, with_crops=args.with_crops)
    if args.command == "demo":
        return demo(args.samples, args.out)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
