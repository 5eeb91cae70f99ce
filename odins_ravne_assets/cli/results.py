"""``odins-ravne query|export|import``: read what ``process`` wrote, in SQL or the standard formats,
and join results computed elsewhere."""

from __future__ import annotations

import sys
from pathlib import Path

from odins_ravne_assets.cli.console import error, format_table
from odins_ravne_assets.cli.process import ensure_dagster_home, process, profile_name, run_config


def query_command(sql: str | None, output_root: str, *, sql_file: str | None = None) -> int:
    """Run one read-only statement: given as an argument, from ``sql_file``, or from stdin (``-``).

    A file or stdin keeps a statement's quotes and newlines away from the shell.
    """
    from gpu_ops.storage import open_storage
    from resources.stage3 import query

    if (sql is None) == (sql_file is None):
        return error("give the SQL as an argument, '-' to read it from stdin, or --file PATH (one of them)")
    if sql_file is not None:
        try:
            sql = Path(sql_file).read_text(encoding="utf-8")
        except OSError as err:
            return error(f"cannot read the SQL file {sql_file}: {err.strerror or err}")
    elif sql == "-":
        sql = sys.stdin.read()
    if not sql.strip():
        return error("the SQL statement is empty")
    try:
        headers, rows = query(open_storage(output_root), sql)
    except FileNotFoundError as err:
        return error(str(err))
    except Exception as err:  # a SQL mistake: say it plainly, no traceback
        return error(f"{type(err).__name__}: {err}")
    print(format_table(headers, rows))
    print(f"({len(rows)} rows)")
    return 0


def _output_tables(output) -> dict:
    from gpu_ops import schemas

    from gpu_ops.repeat_detections import without_suppressed

    tables = {name: output.read_parquet(name, empty=schema) for name, schema in schemas.TABLES.items()}
    if tables["media"].num_rows == 0:
        raise FileNotFoundError(f"no results under {output.root}: run `odins-ravne process INPUT --out {output.root}` first")
    # The exports carry answers: a suppressed repeat detection (a rock) is none (gpu_ops.repeat_detections).
    tables["detections"] = without_suppressed(tables["detections"], tables["repeat_detections"])
    return tables


def export_command(kind: str, output_root: str, dest: str, *, camera_id: str | None = None, profile: str | None = None,
                   top_k: int = 3) -> int:
    """Write a Camtrap DP package or a MegaDetector batch output file from what `process` wrote."""
    from gpu_ops.storage import open_storage
    from odins_ravne_assets.hugin.camtrap_dp_export import export_camtrap_dp, validate_camtrap_dp
    from odins_ravne_assets.hugin.deployments import apply_clock_offsets
    from odins_ravne_assets.hugin.megadetector_export import export_megadetector
    from odins_ravne_assets.hugin.review import reviewed_tables
    from resources.profiles import load_profile

    settings = load_profile(profile)
    try:
        t = _output_tables(open_storage(output_root, settings.storage))
    except FileNotFoundError as err:
        return error(str(err))
    # Reviewed labels win over the model's (hugin.review).
    t["detections"], t["species_labels"] = reviewed_tables(t["media"], t["detections"], t["species_labels"], t["reviews"],
                                                           boxes_only=kind == "megadetector")
    if kind == "megadetector":
        if top_k < 1:
            return error(f"--top-k {top_k}: give at least 1 (the label itself)")
        doc = export_megadetector(dest, media=t["media"], detections=t["detections"], species_labels=t["species_labels"],
                                  camera_id=camera_id, top_k=top_k, settings=settings)
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


def detection_history_command(output_root: str, dest: str, *, species: str | None, occasion_days: int | None,
                              by: str = "site", profile: str | None = None) -> int:
    """Write a species' detection history (stations x occasions, camtrapR's shape) as CSV."""
    from gpu_ops.storage import open_storage
    from odins_ravne_assets.hugin.detection_history import detection_history, write_detection_history_csv
    from resources.profiles import load_profile

    if not species or occasion_days is None:
        return error("export detection-history needs --species NAME and --occasion-days N")
    settings = load_profile(profile)
    try:
        t = _output_tables(open_storage(output_root, settings.storage))
        history = detection_history(t["camera_operation"], t["events"], t["clusters"], species=species,
                                    occasion_days=occasion_days, by=by)
    except (FileNotFoundError, ValueError) as err:
        return error(str(err))
    if history.num_rows == 0:
        return error(f"no camera has an operating day under {output_root}: run `odins-ravne process` with this version first")
    animals = [r for r in t["events"].to_pylist() if r["category"] == "animal"]
    if species.strip().lower() not in {(r[k] or "").lower() for r in animals for k in ("species", "scientific_name")}:
        seen = ", ".join(sorted({r["species"] for r in animals if r["species"]})) or "none"
        print(f"warning: no event of {species!r}: every operating occasion is 0; species seen: {seen}", file=sys.stderr)
    write_detection_history_csv(history, dest)
    print(f"wrote {dest}: {history.num_rows} {by}s x {history.num_columns - 1} occasions of {occasion_days} days ({species})")
    return 0


def import_command(json_path: str, input_root: str, output_root: str, camera_id: str, *, profile: str | None = None) -> int:
    """Join a MegaDetector batch output file at Stage 2: its media are not detected again."""
    from gpu_ops.storage import open_storage
    from odins_ravne_assets.munin.imports import import_megadetector
    from odins_ravne_assets.partitions import InvalidCameraId, validate_camera_id
    from resources.profiles import load_profile

    try:
        validate_camera_id(camera_id)
    except InvalidCameraId as err:
        return error(str(err))
    profile = profile_name(profile)
    settings = load_profile(profile)
    ensure_dagster_home()
    from dagster import AssetKey, DagsterInstance

    from odins_ravne_assets.definitions import build_definitions

    instance = DagsterInstance.get()
    if camera_id not in instance.get_dynamic_partitions("cameras"):
        instance.add_dynamic_partitions("cameras", [camera_id])
    manifest_run = build_definitions(profile).resolve_job_def("camera_job").execute_in_process(
        partition_key=camera_id, instance=instance, asset_selection=[AssetKey("raw_images")], raise_on_error=False,
        run_config=run_config(input_root, output_root, profile),
    )
    if not manifest_run.success:
        print(f"error: could not build the media manifest of camera {camera_id}; see the Dagster UI", file=sys.stderr)
        return 1
    output = open_storage(output_root, settings.storage)
    try:
        done = import_megadetector(output, camera_id, json_path, settings)
    except (ValueError, FileNotFoundError) as err:
        return error(str(err))
    print(f"imported {done['detections']} detections ({done['labels']} with a species) of {done['media']} media from {json_path}")
    if done["not_in_camera"]:
        print(f"warning: {len(done['not_in_camera'])} files of the JSON are not in camera {camera_id} "
              f"(e.g. {done['not_in_camera'][0]!r}): ignored", file=sys.stderr)
    return process(input_root, output_root, camera_ids=[camera_id], profile=profile)
