"""Hugin: analytics assets (events per camera, sites across cameras, the Stage 3 database).

The logic is in :mod:`odins_ravne_assets.hugin` (plain functions over Arrow tables); these assets
read the published Munin tables, call it, and write the results beside them.
"""


from collections import Counter

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from gpu_ops import schemas
from odins_ravne_assets.hugin.clusters import cluster_cameras
from odins_ravne_assets.hugin.events import condense_events, settings_for_camera
from odins_ravne_assets.munin_assets import markdown_table, raw_images, species_labels
from odins_ravne_assets.partitions import cameras, validate_camera_id
from resources.pipeline import PipelineResource
from resources.stage3 import DB_KEY, build_stage3
from resources.storage import partition_key


@asset(
    partitions_def=cameras,
    deps=[species_labels],
    group_name="hugin",
    kinds={"parquet"},
    description="Events: detections at or above min_confidence condensed per camera and species by a "
    "compression window in minutes (pipeline.events), with counts, best confidence and a representative crop.",
)
def condensed_reports(context: AssetExecutionContext, pipeline: PipelineResource) -> MaterializeResult:
    camera_id = validate_camera_id(context.partition_key)
    output, settings = pipeline.output, pipeline.settings.pipeline.events
    detections = output.read_parquet(f"detections/camera_id={camera_id}")
    labels = output.read_parquet(f"species_labels/camera_id={camera_id}")
    media = output.read_parquet(f"media/camera_id={camera_id}")
    events = condense_events(
        labels if labels is not None else schemas.empty(schemas.SPECIES_LABELS),
        detections if detections is not None else schemas.empty(schemas.DETECTIONS),
        window_minutes=settings.compression_window,
        min_confidence=settings.min_confidence,
        per_camera=settings.per_camera,
        media=media,
    )
    path = output.write_parquet(partition_key("events", camera_id), events)
    window, min_conf = settings_for_camera(
        camera_id,
        window_minutes=settings.compression_window,
        min_confidence=settings.min_confidence,
        per_camera=settings.per_camera,
    )
    by_species = Counter(zip(events.column("category").to_pylist(), events.column("species").to_pylist()))
    return MaterializeResult(
        metadata={
            "events": events.num_rows,
            "compression_window_minutes": window,
            "min_confidence": min_conf,
            "events_by_species": MetadataValue.md(
                markdown_table([{"category": c, "species": s, "events": n} for (c, s), n in by_species.most_common()])
            ),
            "path": MetadataValue.path(path),
        }
    )


@asset(
    deps=[raw_images],
    group_name="hugin",
    kinds={"parquet"},
    description="Camera sites: HDBSCAN (haversine) on camera locations across all cameras; cameras "
    "without GPS are listed as no_gps.",
)
def gps_clusters(context: AssetExecutionContext, pipeline: PipelineResource) -> MaterializeResult:
    output, settings = pipeline.output, pipeline.settings.pipeline.clusters
    media = output.read_parquet("media")
    clusters = cluster_cameras(
        media if media is not None else schemas.empty(schemas.MEDIA),
        min_cluster_size=settings.min_cluster_size,
        min_samples=settings.min_samples,
    )
    path = output.write_parquet("clusters/data.parquet", clusters)
    return MaterializeResult(
        metadata={
            "cameras": clusters.num_rows,
            "sites": len(set(clusters.column("site_id").to_pylist()) - {None}),
            "clusters": MetadataValue.md(markdown_table(clusters.to_pylist())),
            "path": MetadataValue.path(path),
        }
    )


@asset(
    deps=[condensed_reports, gps_clusters],
    group_name="hugin",
    kinds={"duckdb"},
    description="Stage 3: OUTPUT/stage3/odins_ravne.duckdb with the views media, detections, crops, "
    "species_labels, events and clusters, for analysts to query locally.",
)
def stage3_database(context: AssetExecutionContext, pipeline: PipelineResource) -> MaterializeResult:
    counts = build_stage3(pipeline.output)
    context.log.info("Stage 3 views: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return MaterializeResult(
        metadata={
            **{f"rows_{view}": count for view, count in counts.items()},
            "database": MetadataValue.path(pipeline.output.uri(DB_KEY)),
        }
    )


HUGIN_ASSETS = [condensed_reports, gps_clusters, stage3_database]
