"""Munin: per-camera processing assets (media manifest, Stage 1 detections, crops, Stage 2 labels).

Each asset is the thin, observable wrapper: the work is in :mod:`odins_ravne_assets.munin` and in the
``gpu_ops`` entrypoint, which the GPU assets launch through Dagster Pipes (a subprocess locally, AWS
Batch jobs in the cloud profiles). Tables are written under the output root, Hive-partitioned by camera.
"""


import io
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
)

from gpu_ops import schemas
from gpu_ops.cropper import crop_detection, encode_jpeg
from gpu_ops.fusion import BurstConfig
from gpu_ops.media import load_image
from gpu_ops.repeat_detections import KEEP_FILE, camera_repeats, read_keep_file, without_suppressed
from odins_ravne_assets.munin.ingest import build_manifest
from odins_ravne_assets.munin.preview import contact_sheet, markdown_image
from odins_ravne_assets.munin.publish import detections_table, species_table, stage1_pending, stage2_pending
from odins_ravne_assets.partitions import cameras, validate_camera_id
from resources.lease import camera_lease, holder_name
from resources.pipeline import PipelineResource
from resources.runner import GpuStageRunner


def markdown_table(rows: list[dict], limit: int = 50) -> str:
    if not rows:
        return "_none_"
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows[:limit]:
        lines.append("| " + " | ".join(str(row[h]).replace("|", "\\|") for h in headers) + " |")
    if len(rows) > limit:
        lines.append(f"\n_{len(rows) - limit} more rows not shown_")
    return "\n".join(lines)


def _camera(context: AssetExecutionContext) -> str:
    return validate_camera_id(context.partition_key)


def _gpu_lease(context: AssetExecutionContext, pipeline: PipelineResource, camera_id: str):
    """The camera's lease around deciding what is pending and running the GPU stage: a second run of
    the camera waits, then finds the work checkpointed (resources.lease says why it waits)."""
    return camera_lease(pipeline.output, camera_id, holder=holder_name(context.run_id), log=context.log.warning)


@asset(
    partitions_def=cameras,
    group_name="munin",
    kinds={"parquet"},
    check_specs=[AssetCheckSpec("every_media_has_status", asset="raw_images")],
    description="The media manifest: every image and video of the camera, probed (EXIF time, GPS, "
    "size, sha256), with status ok|failed and the failure reason.",
)
def raw_images(context: AssetExecutionContext, pipeline: PipelineResource):
    camera_id = _camera(context)
    last_logged = [0]

    def progress(done: int, total: int) -> None:
        if done == total or done - last_logged[0] >= max(1, total // 10):
            last_logged[0] = done
            context.log.info(f"camera {camera_id}: probed {done}/{total} new or changed files")

    bursts = BurstConfig.from_mapping(pipeline.settings.pipeline.bursts)
    manifest, figures = build_manifest(
        pipeline.camera_input(camera_id),
        camera_id,
        pipeline.output,
        progress=progress,
        burst_gap_s=bursts.max_gap_s,
        burst_max_frames=bursts.max_frames,
        warn=context.log.warning,
    )
    path = pipeline.output.write_parquet(schemas.camera_key("media", camera_id), manifest)
    failed = manifest.filter(pc.equal(manifest["status"], "failed")).select(["file_path", "failure"])
    for row in failed.to_pylist():
        context.log.warning(f"camera {camera_id}: {row['file_path']} failed: {row['failure']}")
    statuses = set(manifest.column("status").to_pylist())
    yield MaterializeResult(
        metadata={
            **figures,
            "path": MetadataValue.path(path),
            "failures": MetadataValue.md(markdown_table(failed.to_pylist())),
        }
    )
    yield AssetCheckResult(
        check_name="every_media_has_status",
        passed=statuses <= {"ok", "failed"} and manifest.filter(pc.is_null(manifest["status"])).num_rows == 0,
        metadata={"statuses": ", ".join(sorted(str(s) for s in statuses))},
    )


@asset(
    partitions_def=cameras,
    deps=[raw_images],
    group_name="munin",
    kinds={"parquet", "pytorch"},
    check_specs=[AssetCheckSpec("bboxes_inside_image", asset="detections")],
    description="Stage 1: animals, people and vehicles in every media (sampled frames for videos), "
    "run out of process by the gpu_ops entrypoint; boxes normalized [x, y, w, h] from the top-left.",
)
def detections(context: AssetExecutionContext, pipeline: PipelineResource, gpu_runner: GpuStageRunner):
    camera_id = _camera(context)
    with _gpu_lease(context, pipeline, camera_id):
        pending = stage1_pending(pipeline.output, camera_id, pipeline.settings)
        stats = {}
        if pending:  # a GPU job costs a cold start (and money on Batch): launch one only for real work
            context.log.info(f"camera {camera_id}: {pending} media to detect")
            stats = gpu_runner.run(context, stage="detect", camera_id=camera_id, pipeline=pipeline)
        else:
            context.log.info(f"camera {camera_id}: every media already detected with this model; no GPU job")
    table, _, failures = detections_table(pipeline.output, camera_id, pipeline.settings)
    path = pipeline.output.write_parquet(schemas.camera_key("detections", camera_id), table)
    by_label = Counter(zip(table.column("category").to_pylist(), table.column("label").to_pylist()))
    coords = [table.column(c) for c in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")]
    inside = table.num_rows == 0 or (
        min(pc.min(c).as_py() for c in coords) >= 0.0
        and pc.max(pc.add(coords[0], coords[2])).as_py() <= 1.0 + 1e-6
        and pc.max(pc.add(coords[1], coords[3])).as_py() <= 1.0 + 1e-6
    )
    sheet = contact_sheet(table.to_pylist(), pipeline.camera_input(camera_id))
    pictures = {"preview": MetadataValue.md(markdown_image(sheet, f"detections of {camera_id}"))} if sheet else {}
    yield MaterializeResult(
        metadata={
            **pictures,
            "detections": table.num_rows,
            "model": pipeline.settings.pipeline.stage1.model,
            "media_with_detections": len(set(table.column("file_path").to_pylist())),
            # Boxes the camera background added where Stage 1 found nothing (gpu_ops.background).
            "background_detections": sum(1 for s in table.column("source").to_pylist() if s == "background"),
            "by_label": MetadataValue.md(
                markdown_table([{"category": c, "label": l, "count": n} for (c, l), n in by_label.most_common()])
            ),
            "stage1_failures": MetadataValue.md(
                markdown_table([{"file_path": k, "failure": v} for k, v in sorted(failures.items())])
            ),
            **{f"stage1_{k}": v for k, v in stats.items()},
            "path": MetadataValue.path(path),
        }
    )
    yield AssetCheckResult(check_name="bboxes_inside_image", passed=bool(inside))


@asset(
    partitions_def=cameras,
    deps=[detections],
    group_name="munin",
    kinds={"parquet"},
    description="Repeat detections: places where a box recurs in many triggers of the camera on several "
    f"days (a rock, a branch), one row each; their detections are left out of crops, events, exports and "
    f"Stage 3's observations. {KEEP_FILE} at the top of the input keeps a place (gpu_ops.repeat_detections).",
)
def repeat_detections(context: AssetExecutionContext, pipeline: PipelineResource) -> MaterializeResult:
    camera_id = _camera(context)
    output = pipeline.output
    keep = read_keep_file(pipeline.input.read_bytes(KEEP_FILE)) if pipeline.input.exists(KEEP_FILE) else {}
    found = output.read_parquet(schemas.camera_prefix("detections", camera_id), empty=schemas.DETECTIONS)
    table = camera_repeats(found, output.read_parquet(schemas.camera_prefix("media", camera_id)),
                           pipeline.settings.pipeline.repeat_detections, keep)
    path = output.write_parquet(schemas.camera_key("repeat_detections", camera_id), table)
    places = table.drop_columns(["detection_ids"]).to_pylist()
    suppressed = [p for p in places if p["suppressed"]]
    # One picture per suppressed place: its strongest detection, box drawn.
    by_id = {d["detection_id"]: d for d in found.to_pylist()}
    examples = [max((by_id[i] for i in ids), key=lambda d: d["conf"])
                for ids, gone in zip(table.column("detection_ids").to_pylist(), table.column("suppressed").to_pylist()) if gone]
    sheet = contact_sheet(examples, pipeline.camera_input(camera_id)) if examples else None
    pictures = {"preview": MetadataValue.md(markdown_image(sheet, f"suppressed places of {camera_id}"))} if sheet else {}
    for place in suppressed:
        context.log.info(f"camera {camera_id}: suppressed {place['detections']} detections ({place['label']}) at "
                         f"[{place['bbox_x']:.3f}, {place['bbox_y']:.3f}, {place['bbox_w']:.3f}, {place['bbox_h']:.3f}]: {place['reason']}")
    return MaterializeResult(
        metadata={
            **pictures,
            "places": len(places),
            "suppressed_places": len(suppressed),
            "suppressed_detections": sum(p["detections"] for p in suppressed),
            "kept_by_user": len(places) - len(suppressed),
            "keep_file": KEEP_FILE if keep else "none",
            "repeat_detections": MetadataValue.md(markdown_table(places)),
            "path": MetadataValue.path(path),
        }
    )


@asset(
    partitions_def=cameras,
    deps=[repeat_detections],
    group_name="munin",
    kinds={"parquet"},
    description="JPEG crops of the detections at or above pipeline.crops.min_confidence, with an index.",
)
def crops(context: AssetExecutionContext, pipeline: PipelineResource) -> MaterializeResult:
    camera_id = _camera(context)
    output = pipeline.output
    # The background's boxes as the detections asset published them: not computed a second time.
    published = output.read_parquet(schemas.camera_prefix("detections", camera_id), empty=schemas.DETECTIONS)
    background = published.filter(pc.equal(published["source"], "background")).to_pylist()
    _, table, _ = detections_table(output, camera_id, pipeline.settings, background=background)
    table = without_suppressed(table, output.read_parquet(schemas.camera_prefix("repeat_detections", camera_id)))
    table, recut, background = _recut_missing_crops(camera_id, table, output, pipeline.camera_input(camera_id), pipeline.settings)
    if recut:
        context.log.warning(f"camera {camera_id}: {recut} crop files were missing and were cut again")
    if background:
        context.log.info(f"camera {camera_id}: cut {background} crops of camera-background boxes from their media")
    path = output.write_parquet(schemas.camera_key("crops", camera_id), table)
    return MaterializeResult(
        metadata={
            "crops": table.num_rows,
            "recut": recut,
            "background_crops_cut": background,
            "path": MetadataValue.path(path),
            "crop_folder": MetadataValue.path(output.uri(schemas.camera_prefix("crops", camera_id))),
        }
    )


def _recut_missing_crops(camera_id: str, table: pa.Table, output, camera_input, profile) -> tuple[pa.Table, int, int]:
    """Crops are written by Stage 1; a crop file missing since (deleted, or detections imported from
    a MegaDetector file) is cut here from its media, as are the crops of camera-background boxes
    (found after Stage 1, from the whole camera). Returns the index with sizes filled in, how many
    crops were cut again and how many background crops were cut."""
    rows = table.to_pylist()
    # One listing of the camera's crop folder, not one existence check per crop (an S3 HEAD each).
    present = {info.key for info in output.list(schemas.camera_prefix("crops", camera_id))}
    missing = [row for row in rows if row["crop_path"] not in present]
    for row in rows:
        if row["width"] is None and row["crop_path"] in present:  # cut by an earlier run of this asset
            with Image.open(io.BytesIO(output.read_bytes(row["crop_path"]))) as crop_file:
                row["width"], row["height"] = crop_file.size
    if not missing:
        return pa.Table.from_pylist(rows, schema=table.schema), 0, 0
    detections_by_id = {
        row["detection_id"]: row for row in output.read_parquet(schemas.camera_prefix("detections", camera_id)).to_pylist()
    }
    recut = background = 0
    for row in missing:
        det = detections_by_id[row["detection_id"]]
        if row["frame_number"]:
            continue  # video frames are cut again by re-running Stage 1, not here
        with camera_input.local_copy(row["file_path"]) as path:
            image = load_image(path)
        bbox = (det["bbox_x"], det["bbox_y"], det["bbox_w"], det["bbox_h"])
        crop = crop_detection(image, bbox, pad_fraction=profile.pipeline.crops.pad_fraction, max_side=profile.pipeline.crops.max_side)
        output.write_bytes(row["crop_path"], encode_jpeg(crop, quality=profile.pipeline.crops.jpeg_quality))
        row["height"], row["width"] = crop.shape[:2]
        if det["source"] == "background":
            background += 1
        else:
            recut += 1
    return pa.Table.from_pylist(rows, schema=table.schema), recut, background


@asset(
    partitions_def=cameras,
    # deployments: where the camera stood (country / region), for SpeciesNet's geofence.
    deps=[crops, AssetKey("deployments")],
    group_name="munin",
    kinds={"parquet", "pytorch"},
    description="Stage 2: a species label with taxonomy for every crop, run out of process by the "
    "gpu_ops entrypoint; the classifier is chosen by pipeline.stage2.classifier.",
)
def species_labels(context: AssetExecutionContext, pipeline: PipelineResource, gpu_runner: GpuStageRunner) -> MaterializeResult:
    camera_id = _camera(context)
    with _gpu_lease(context, pipeline, camera_id):
        pending = stage2_pending(pipeline.output, camera_id, pipeline.settings)
        stats = {}
        if pending:
            context.log.info(f"camera {camera_id}: {pending} crops to classify")
            stats = gpu_runner.run(context, stage="classify", camera_id=camera_id, pipeline=pipeline)
        else:
            context.log.info(f"camera {camera_id}: every crop already labelled; no GPU job")
    table = species_table(pipeline.output, camera_id, pipeline.settings)
    path = pipeline.output.write_parquet(schemas.camera_key("species_labels", camera_id), table)
    by_species = Counter(zip(table.column("species").to_pylist(), table.column("scientific_name").to_pylist()))
    return MaterializeResult(
        metadata={
            "labels": table.num_rows,
            "by_species": MetadataValue.md(
                markdown_table(
                    [{"species": s, "scientific_name": n, "count": c} for (s, n), c in by_species.most_common()]
                )
            ),
            **{f"stage2_{k}": v for k, v in stats.items()},
            "path": MetadataValue.path(path),
        }
    )


MUNIN_ASSETS = [raw_images, detections, repeat_detections, crops, species_labels]
