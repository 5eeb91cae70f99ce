"""Hugin: analytics assets (events per camera, sites across cameras, the Stage 3 database).

The logic is in :mod:`odins_ravne_assets.hugin` (plain functions over Arrow tables); these assets
read the published Munin tables, call it, and write the results beside them.
"""


import tempfile
from collections import Counter
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)

from gpu_ops import schemas
from gpu_ops.repeat_detections import without_suppressed
from gpu_ops.stage1 import read_infrared
from odins_ravne_assets.hugin.clusters import cluster_locations
from odins_ravne_assets.hugin.detector_audit import audit_detector
from odins_ravne_assets.hugin.deployments import (
    apply_clock_offsets,
    build_deployments,
    deployment_locations,
    read_deployments_csv,
    timestamp_correction_counts,
    timestamp_issue_counts,
    trap_nights,
)
from odins_ravne_assets.hugin.effort import OPERATION_CSV, camera_operation, outage_days, read_camera_operation_csv
from odins_ravne_assets.hugin.events import condense_events, settings_for_camera
from odins_ravne_assets.hugin.reports import write_reports
from odins_ravne_assets.hugin.sensitive_species import generalize_locations, sensitive_cameras
from odins_ravne_assets.hugin.sites import site_summary
from odins_ravne_assets.hugin.stage3_views import MACROS, extra_views
from odins_ravne_assets.munin.preview import markdown_image
from odins_ravne_assets.munin_assets import markdown_table, raw_images, species_labels
from odins_ravne_assets.partitions import cameras, validate_camera_id
from resources.pipeline import PipelineResource
from resources.stage3 import DB_KEY, build_stage3

DEPLOYMENTS_CSV = "deployments.csv"
AUDIT_SHOWN = ("lighting", "media", "positives", "negatives", "reviewed_positives", "confirmed_positives",
               "reviewed_negatives", "missed_negatives", "recall", "recall_low", "recall_high", "status",
               "completeness", "counts_status")

# The project-wide assets follow the cameras: requested once a camera asset updated, after the camera
# runs in flight finish (one refresh for a batch of uploads). Unlike `eager()` a camera that is missing
# (its first run failed, or has not run yet) does not hold the project back, and a fresh instance does
# not build an empty project before any camera ran.
AFTER_CAMERAS = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("after_cameras")


def read_deployments(pipeline: PipelineResource):
    """The optional deployments.csv at the top of the input folder, or None."""
    if not pipeline.input.exists(DEPLOYMENTS_CSV):
        return None
    return read_deployments_csv(pipeline.input.read_bytes(DEPLOYMENTS_CSV),
                                date_format=pipeline.settings.pipeline.effort.date_format)


def read_camera_operation(pipeline: PipelineResource) -> list[dict]:
    """The rows of the optional camera_operation.csv at the top of the input folder."""
    if not pipeline.input.exists(OPERATION_CSV):
        return []
    return read_camera_operation_csv(pipeline.input.read_bytes(OPERATION_CSV),
                                     date_format=pipeline.settings.pipeline.effort.date_format)


@multi_asset(
    partitions_def=cameras,
    specs=[
        AssetSpec(
            "deployments", deps=[raw_images], group_name="hugin", kinds={"parquet"},
            description="Deployments: where and when the camera stood and its clock offset, from the input's "
            "deployments.csv where it lists the camera, else from the media (median GPS fix, first and last time).",
        ),
        AssetSpec(
            "camera_operation", deps=[raw_images, "deployments"], group_name="hugin", kinds={"parquet"},
            description="Camera operation, one row per camera and day of its deployments: long silences are "
            "suspected outages, camera_operation.csv decides; trap-nights are its effort_days.",
        ),
    ],
)
def deployments(context: AssetExecutionContext, pipeline: PipelineResource):
    """Both tables come from one reading of the media and deployments.csv; each is its own asset so
    lineage shows who reads which."""
    camera_id = validate_camera_id(context.partition_key)
    output = pipeline.output
    media = output.read_parquet(schemas.camera_prefix("media", camera_id))
    settings = pipeline.settings.pipeline
    table = build_deployments(media, read_deployments(pipeline), camera_id=camera_id,
                              use_file_mtime=settings.events.use_file_mtime)
    path = output.write_parquet(schemas.camera_key("deployments", camera_id), table)
    yield MaterializeResult(
        asset_key="deployments",
        metadata={
            "deployments": table.num_rows,
            "source": ", ".join(sorted(set(table.column("source").to_pylist()))),
            "deployments_table": MetadataValue.md(markdown_table(table.to_pylist())),
            "path": MetadataValue.path(path),
        },
    )
    operation = camera_operation(table, media, max_silence_days=settings.effort.max_silence_days,
                                 overrides=read_camera_operation(pipeline), use_file_mtime=settings.events.use_file_mtime)
    path = output.write_parquet(schemas.camera_key("camera_operation", camera_id), operation)
    yield MaterializeResult(
        asset_key="camera_operation",
        metadata={
            "trap_nights": round(sum(operation.column("effort_days").to_pylist()), 3),
            "days_not_operating": MetadataValue.json(outage_days(operation)),
            "path": MetadataValue.path(path),
        },
    )


@asset(
    partitions_def=cameras,
    deps=[species_labels, deployments],
    group_name="hugin",
    kinds={"parquet"},
    description="Events: detections at or above min_confidence condensed per camera and species by a "
    "compression window in minutes (pipeline.events), with counts, best confidence and a representative crop; "
    "and the detector audit: the share of animal media the detector finds, estimated from the camera's reviews.",
    check_specs=[AssetCheckSpec(
        "counts_not_lower_bounds", asset="condensed_reports",
        description="Warns where the camera's reviews show animal media that neither the detector nor a review put "
        "in the counts, more than pipeline.events.target_recall allows: its counts are lower bounds.")],
)
def condensed_reports(context: AssetExecutionContext, pipeline: PipelineResource):
    camera_id = validate_camera_id(context.partition_key)
    output, settings = pipeline.output, pipeline.settings.pipeline.events
    detections = without_suppressed(output.read_parquet(schemas.camera_prefix("detections", camera_id), empty=schemas.DETECTIONS),
                                    output.read_parquet(schemas.camera_prefix("repeat_detections", camera_id)))
    labels = output.read_parquet(schemas.camera_prefix("species_labels", camera_id), empty=schemas.SPECIES_LABELS)
    media = output.read_parquet(schemas.camera_prefix("media", camera_id))
    camera_deployments = output.read_parquet(schemas.camera_prefix("deployments", camera_id), empty=schemas.DEPLOYMENTS)
    # Events are cut on the corrected clock: a camera 5 minutes slow must not split or merge visits.
    reviews = output.read_parquet(schemas.camera_prefix("reviews", camera_id), empty=schemas.REVIEWS)
    media_fixed = apply_clock_offsets(media, camera_deployments, use_file_mtime=settings.use_file_mtime)
    detections_fixed = apply_clock_offsets(detections, camera_deployments, media=media, use_file_mtime=settings.use_file_mtime)
    events = condense_events(
        labels,
        detections_fixed,
        window_minutes=settings.compression_window,
        min_confidence=settings.min_confidence,
        per_camera=settings.per_camera,
        smoothing=settings.smoothing,
        rollup_below=settings.rollup_below,
        reviews=reviews,
        media=media_fixed,
    )
    path = output.write_parquet(schemas.camera_key("events", camera_id), events)
    window, min_conf = settings_for_camera(
        camera_id,
        window_minutes=settings.compression_window,
        min_confidence=settings.min_confidence,
        per_camera=settings.per_camera,
    )
    audit = audit_detector(media, detections, reviews, camera_id=camera_id, min_confidence=min_conf,
                           target_recall=settings.target_recall, infrared=read_infrared(output, camera_id))
    output.write_parquet(schemas.camera_key("detector_audit", camera_id), audit)
    audit_rows = audit.to_pylist()
    audit_all = next((r for r in audit_rows if r["lighting"] == "all"), None)
    counts_status = audit_all["counts_status"] if audit_all else "not_audited"
    by_species = Counter(zip(events.column("category").to_pylist(), events.column("species").to_pylist()))
    issues = timestamp_issue_counts(media_fixed)
    yield MaterializeResult(
        metadata={
            "events": events.num_rows,
            "compression_window_minutes": window,
            "min_confidence": min_conf,
            "clock_offset_s": float(camera_deployments.column("clock_offset_s")[0].as_py() or 0.0) if camera_deployments.num_rows else 0.0,
            **{f"timestamp_{k}": v for k, v in issues.items()},
            **{f"corrected_{k}": v for k, v in timestamp_correction_counts(media_fixed).items()},
            "detector_audit": audit_all["status"] if audit_all else "not_audited",
            "counts_audit": counts_status,
            "detector_recall": MetadataValue.float(audit_all["recall"]) if audit_all and audit_all["recall"] is not None
            else MetadataValue.text("not estimated"),
            "detector_audit_table": MetadataValue.md(markdown_table(
                [{k: (round(r[k], 3) if isinstance(r[k], float) else r[k]) for k in AUDIT_SHOWN} for r in audit_rows])),
            "events_by_species": MetadataValue.md(
                markdown_table([{"category": c, "species": s, "events": n} for (c, s), n in by_species.most_common()])
            ),
            "path": MetadataValue.path(path),
        }
    )
    yield AssetCheckResult(
        check_name="counts_not_lower_bounds", passed=counts_status != "lower_bounds", severity=AssetCheckSeverity.WARN,
        metadata={"counts_status": counts_status, "note": (audit_all or {}).get("note") or "no media in the audit",
                  "completeness": MetadataValue.float(audit_all["completeness"])
                  if audit_all and audit_all["completeness"] is not None else MetadataValue.text("not estimated")},
    )


@asset(
    deps=[raw_images, deployments],
    automation_condition=AFTER_CAMERAS,
    group_name="hugin",
    kinds={"parquet"},
    description="Camera sites: HDBSCAN (haversine) on deployment locations across all cameras, at "
    "most max_site_radius_m wide; cameras without GPS are listed as no_gps.",
)
def gps_clusters(context: AssetExecutionContext, pipeline: PipelineResource) -> MaterializeResult:
    output, settings = pipeline.output, pipeline.settings.pipeline.clusters
    media = output.read_parquet("media", empty=schemas.MEDIA)
    deployments = output.read_parquet("deployments", empty=schemas.DEPLOYMENTS)
    clustering = cluster_locations(
        deployment_locations(deployments, media),
        min_cluster_size=settings.min_cluster_size,
        min_samples=settings.min_samples,
        max_site_radius_m=settings.max_site_radius_m,
    )
    clusters = clustering.table
    path = output.write_parquet("clusters/data.parquet", clusters)
    return MaterializeResult(
        metadata={
            "cameras": clusters.num_rows,
            "sites": len(set(clusters.column("site_id").to_pylist()) - {None}),
            "cluster_persistence": MetadataValue.json({str(k): round(v, 4) for k, v in clustering.persistence.items()}),
            "clusters": MetadataValue.md(markdown_table(clusters.to_pylist())),
            "path": MetadataValue.path(path),
        }
    )


@asset(
    deps=[condensed_reports, deployments, gps_clusters],
    automation_condition=AFTER_CAMERAS,
    group_name="hugin",
    kinds={"html"},
    description="Reports: a project page and one per camera (HTML with PNG plots: events per species, "
    "activity by hour, events over time, a map of sites; the best picture of each species and of each event) "
    "under OUTPUT/reports/.",
)
def reports(context: AssetExecutionContext, pipeline: PipelineResource) -> MaterializeResult:
    output, profile = pipeline.output, pipeline.settings
    events = output.read_parquet("events", empty=schemas.EVENTS)
    media = output.read_parquet("media")
    deployments = output.read_parquet("deployments", empty=schemas.DEPLOYMENTS)
    clusters = output.read_parquet("clusters", empty=schemas.CLUSTERS)
    use_file_mtime = profile.pipeline.events.use_file_mtime
    operation = output.read_parquet("camera_operation", empty=schemas.CAMERA_OPERATION)
    sites, site_species = site_summary(events, clusters, trap_nights(deployments, media, use_file_mtime=use_file_mtime,
                                                                     operation=operation))
    hidden = sensitive_cameras(events, profile.pipeline.sensitive_species)
    shown_clusters = generalize_locations(clusters, hidden)
    with tempfile.TemporaryDirectory() as tmp:
        written = write_reports(tmp, events=events, clusters=shown_clusters, media=media, sites=sites, site_species=site_species,
                                crops=output, audit=output.read_parquet("detector_audit", empty=schemas.DETECTOR_AUDIT))
        for file in sorted(Path(tmp).rglob("*")):
            if file.is_file():
                output.write_bytes(f"reports/{file.relative_to(tmp).as_posix()}", file.read_bytes())
        project = written["project"]
        plots = [f for f in project.files if f.suffix == ".png"][:4]
        pictures = "\n\n".join(markdown_image(f.read_bytes(), f.stem) for f in plots)
        page = output.uri(f"reports/{project.html_path.relative_to(tmp).as_posix()}")
    return MaterializeResult(
        metadata={
            "summary": MetadataValue.md(project.markdown),
            "plots": MetadataValue.md(pictures or "_no plots_"),
            "report": MetadataValue.path(page),
            "camera_reports": len(written) - 1,
            "generalized_cameras": len(hidden),
        }
    )


@asset(
    deps=[condensed_reports, deployments, gps_clusters, reports],
    automation_condition=AFTER_CAMERAS,
    group_name="hugin",
    kinds={"duckdb"},
    description="Stage 3: OUTPUT/stage3/odins_ravne.duckdb with the views media, detections, crops, "
    "repeat_detections, species_labels, events, detector_audit, clusters, deployments, observations (without the suppressed "
    "repeat detections), sites and site_species.",
)
def stage3_database(context: AssetExecutionContext, pipeline: PipelineResource) -> MaterializeResult:
    counts = build_stage3(
        pipeline.output,
        extra_views=extra_views(deployments_from_media=False),
        materialize=frozenset({"observations"}),  # 10 M detections: 1 s a query as a table, 15 s as a view
        macros=MACROS,
    )
    context.log.info("Stage 3 views: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return MaterializeResult(
        metadata={
            **{f"rows_{view}": count for view, count in counts.items()},
            "database": MetadataValue.path(pipeline.output.uri(DB_KEY)),
        }
    )


HUGIN_ASSETS = [deployments, condensed_reports, gps_clusters, reports, stage3_database]
