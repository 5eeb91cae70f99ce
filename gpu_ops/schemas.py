"""The tables every stage reads and writes: the contract between Munin, Hugin and analysts.

Each table is Hive-partitioned Parquet under the output root, ``OUTPUT/<table>/camera_id=<id>/``,
except ``clusters`` (one file across cameras); :data:`TABLES` lists them all and
:func:`camera_key` spells their keys. The Stage 3 DuckDB views carry these names and
columns. ``camera_id`` is the Hive partition column: it is in each row we write as well, so a file
read on its own still says which camera it belongs to.

Bounding boxes follow the MegaDetector convention: normalized ``[x, y, w, h]`` in [0, 1], origin at
the top-left corner of the image.
"""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("us")

MEDIA = pa.schema(
    [
        ("camera_id", pa.string()),
        ("file_path", pa.string()),  # relative to the camera folder, POSIX separators
        ("media_type", pa.string()),  # image | video
        ("sha256", pa.string()),
        ("bytes", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("frame_count", pa.int32()),  # 1 for images; decoded frames for videos
        ("frame_rate", pa.float64()),  # videos: the stream's nominal frames per second; null for images
        ("timestamp", TIMESTAMP),  # camera-local time as the camera wrote it
        ("timestamp_source", pa.string()),  # exif | video_metadata | file_mtime | none
        ("latitude", pa.float64()),  # null when missing or invalid (0,0 counts as missing)
        ("longitude", pa.float64()),
        ("gps_status", pa.string()),  # ok | missing | invalid: <reason>
        ("make", pa.string()),
        ("model", pa.string()),
        ("status", pa.string()),  # ok | failed
        ("failure", pa.string()),  # why it failed; null when ok
        ("burst_id", pa.string()),  # the trigger's frames share it (gpu_ops.bursts)
        ("burst_index", pa.int32()),  # position of the frame in its burst, from 0
        ("burst_size", pa.int32()),
    ]
)

DETECTIONS = pa.schema(
    [
        ("camera_id", pa.string()),
        ("detection_id", pa.string()),  # "<sha256[:16]>-<frame_number>-<index>", stable across runs
        ("file_path", pa.string()),
        ("sha256", pa.string()),
        ("frame_number", pa.int32()),  # 0 for images; the decoded frame index for videos
        ("timestamp", TIMESTAMP),  # media time, plus the frame offset for videos
        ("category", pa.string()),  # animal | person | vehicle
        ("label", pa.string()),  # the model's own label, e.g. "dog"
        ("conf", pa.float32()),
        ("bbox_x", pa.float32()),
        ("bbox_y", pa.float32()),
        ("bbox_w", pa.float32()),
        ("bbox_h", pa.float32()),
        ("source", pa.string()),  # detector | motion | detector+motion | contrast (gpu_ops.second_look) | background
        ("model", pa.string()),  # detector name and weights digest
    ]
)

# One row per place where a box recurs across a camera's triggers and days (gpu_ops.repeat_detections).
# Its detections are left out of crops, species labels, events, sites, exports and Stage 3's
# observations while ``suppressed``; a row of this table pasted into repeat_detections_keep.csv keeps it.
REPEAT_DETECTIONS = pa.schema(
    [
        ("camera_id", pa.string()),
        ("bbox_x", pa.float32()),  # the place: its strongest detection's box
        ("bbox_y", pa.float32()),
        ("bbox_w", pa.float32()),
        ("bbox_h", pa.float32()),
        ("label", pa.string()),  # the strongest detection's label, e.g. "sheep" for a rock
        ("detections", pa.int32()),
        ("triggers", pa.int32()),  # distinct bursts (a single photo or video is a trigger of its own)
        ("days", pa.int32()),  # distinct capture dates
        ("first_seen", TIMESTAMP),
        ("last_seen", TIMESTAMP),
        ("example_file_path", pa.string()),  # the strongest detection's media, to look at
        ("suppressed", pa.bool_()),  # False where repeat_detections_keep.csv keeps the place
        ("reason", pa.string()),
        ("detection_ids", pa.list_(pa.string())),
    ]
)

CROPS = pa.schema(
    [
        ("camera_id", pa.string()),
        ("detection_id", pa.string()),
        ("file_path", pa.string()),
        ("sha256", pa.string()),
        ("frame_number", pa.int32()),
        ("crop_path", pa.string()),  # relative to the output root
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("category", pa.string()),
        ("label", pa.string()),
        ("conf", pa.float32()),
    ]
)

SPECIES_LABELS = pa.schema(
    [
        ("camera_id", pa.string()),
        ("detection_id", pa.string()),
        ("file_path", pa.string()),
        ("crop_path", pa.string()),
        ("category", pa.string()),
        ("detector_label", pa.string()),
        ("species", pa.string()),  # common name, e.g. "domestic dog"; "bird" when only the class is known
        ("scientific_name", pa.string()),  # e.g. "Canis familiaris", "Aves"
        ("taxon_rank", pa.string()),  # species | genus | family | order | class
        ("taxon_class", pa.string()),  # e.g. "Mammalia", "Aves"
        ("score", pa.float32()),
        ("classification_source", pa.string()),  # e.g. "coco-taxonomy-map", "ultralytics:<file>", "speciesnet:4.0.1a"
        # What a SpeciesNet ensemble decided (null for the other classifiers):
        ("classifier_label", pa.string()),  # its full label, "uuid;class;order;family;genus;species;common name"
        ("prediction_source", pa.string()),  # detector | classifier | classifier+rollup_to_genus | classifier+geofence+...
        ("rollup_level", pa.string()),  # genus | family | order | class | kingdom when rolled up; else null
        ("geofenced", pa.bool_()),  # the top species was outside the deployment's country / region
        ("raw_label", pa.string()),  # the classifier's own top label before the ensemble, and its score
        ("raw_score", pa.float32()),
        ("country", pa.string()),  # the place the geofence used (ISO 3166-1 alpha-3, admin-1 region)
        ("admin1_region", pa.string()),
        # The classifier's best classes, best first (up to gpu_ops.classifier.TOP_CLASSES: SpeciesNet's raw
        # top five, a classification model's top five); null where it names one class. The MegaDetector export's top-k.
        ("top_classifications", pa.list_(pa.struct([("species", pa.string()), ("lineage", pa.string()),
                                                     ("score", pa.float32())]))),
    ]
)

EVENTS = pa.schema(
    [
        ("camera_id", pa.string()),
        ("event_id", pa.string()),
        ("category", pa.string()),
        ("species", pa.string()),
        ("scientific_name", pa.string()),
        ("start", TIMESTAMP),
        ("end", TIMESTAMP),
        ("n_media", pa.int32()),
        ("max_count", pa.int32()),  # the largest count in any one media (frame)
        ("best_conf", pa.float32()),
        ("representative_file_path", pa.string()),
        ("representative_detection_id", pa.string()),
        ("representative_crop_path", pa.string()),
        ("rollup_level", pa.string()),  # genus | family | order | class | kingdom when rolled up; else null
        ("reviewed", pa.bool_()),  # a person's label (the reviews table), not the model's
    ]
)

# Labels a person checked (Timelapse, a Camtrap DP editor, a MegaDetector file: hugin.review). Kept
# apart from the model's tables, so a re-run of any stage never loses them.
REVIEWS = pa.schema(
    [
        ("camera_id", pa.string()),
        ("file_path", pa.string()),
        ("detection_id", pa.string()),  # null: the review is the record of the whole media
        ("observation_type", pa.string()),  # animal | human | vehicle | blank
        ("species", pa.string()),
        ("scientific_name", pa.string()),
        ("count", pa.int32()),  # individuals of the species in the media; null when not counted
        ("source", pa.string()),  # timelapse | camtrap-dp | megadetector
        ("source_file", pa.string()),
        ("imported_at", TIMESTAMP),  # UTC
    ]
)

# One row per camera and lighting (infrared | daylight | unknown, and ``all``): how many animal media the
# detector finds, estimated from the media-level reviews of a random sample of its positives and
# negatives (odins_ravne_assets.hugin.detector_audit). Counts of animal media are lower bounds where
# ``counts_status`` is lower_bounds; an interval is null where nothing was reviewed to estimate it.
DETECTOR_AUDIT = pa.schema(
    [
        ("camera_id", pa.string()),
        ("lighting", pa.string()),  # infrared | daylight | unknown (no thumbnail: videos, background off) | all
        ("min_confidence", pa.float64()),  # an animal box at or above it makes a media positive (the events' threshold)
        ("media", pa.int64()),  # ok media
        ("positives", pa.int64()),  # media with an animal box at or above min_confidence
        ("negatives", pa.int64()),
        ("reviewed_positives", pa.int64()),  # of the positives, media reviewed as a whole
        ("confirmed_positives", pa.int64()),  # ... in which the reviewer saw an animal
        ("reviewed_negatives", pa.int64()),
        ("missed_negatives", pa.int64()),  # reviewed negatives in which the reviewer saw an animal
        ("est_animal_media", pa.float64()),  # estimated media with an animal, found or not
        ("est_missed_media", pa.float64()),  # estimated media with an animal the detector did not box
        ("est_unrecorded_media", pa.float64()),  # ... of those, not reviewed either: in no count
        ("recall", pa.float64()),  # estimated share of animal media the detector boxes
        ("recall_low", pa.float64()),  # 95 % interval (exact per stratum, combined at the extremes)
        ("recall_high", pa.float64()),
        ("completeness", pa.float64()),  # share of animal media the counts hold (the detector's and the reviewed)
        ("completeness_low", pa.float64()),
        ("completeness_high", pa.float64()),
        ("precision", pa.float64()),  # share of positives with an animal in them
        ("precision_low", pa.float64()),
        ("precision_high", pa.float64()),
        ("status", pa.string()),  # the detector: ok | misses_animals | uncertain | not_audited
        ("counts_status", pa.string()),  # the counts: complete | lower_bounds | uncertain | not_audited
        ("note", pa.string()),  # what the status means for this row, in a sentence
    ]
)

CLUSTERS = pa.schema(
    [
        ("camera_id", pa.string()),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("n_media_with_gps", pa.int32()),
        ("cluster_id", pa.int32()),  # HDBSCAN label; -1 for noise or no GPS
        ("site_id", pa.string()),
        ("status", pa.string()),  # clustered | noise | no_gps
        ("probability", pa.float64()),
    ]
)

DEPLOYMENTS = pa.schema(
    [
        ("camera_id", pa.string()),
        ("deployment_id", pa.string()),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("start", TIMESTAMP),  # local wall-clock time of the deployment's time zone
        ("end", TIMESTAMP),
        ("timezone", pa.string()),  # IANA name or fixed offset like "+01:00"; null when unknown
        ("clock_offset_s", pa.float64()),  # added to camera time to get true local time (at setup)
        ("clock_offset_end_s", pa.float64()),  # the same at take-down: linear drift in between; null: no drift
        ("clock_follows_dst", pa.bool_()),  # the camera changes its own clock for daylight saving (hugin.deployments)
        ("max_silence_days", pa.float64()),  # a longer silence is a suspected outage; null: pipeline.effort's
        ("date_issue", pa.string()),  # ambiguous_date: a day/month order nothing in the file decided
        ("camera_height_m", pa.float64()),
        ("bait", pa.string()),
        ("habitat", pa.string()),
        ("country", pa.string()),  # ISO 3166-1 alpha-3 (NOR, USA): SpeciesNet's geofence
        ("admin1_region", pa.string()),  # first-level region code, e.g. CA (California)
        ("source", pa.string()),  # deployments.csv | media
    ]
)

# One row per camera and local calendar day from its first deployment's setup to its last take-down
# (hugin.effort): whether it was operating, and how much of the day counts as effort.
CAMERA_OPERATION = pa.schema(
    [
        ("camera_id", pa.string()),
        ("deployment_id", pa.string()),  # the deployment with most of the day; null between deployments
        ("date", pa.date32()),
        ("operating", pa.bool_()),
        ("effort_days", pa.float64()),  # the operating fraction of the day; its sum is the camera's trap-nights
        ("source", pa.string()),  # media | suspected_outage | camera_operation.csv | not_deployed
        ("note", pa.string()),  # why: the silence, or the camera_operation.csv row's note
    ]
)

COSTS = pa.schema(
    [
        ("camera_id", pa.string()),
        ("run_id", pa.string()),  # the Dagster run that launched the job
        ("stage", pa.string()),  # detect | classify
        ("job_id", pa.string()),
        ("job_name", pa.string()),
        ("queue", pa.string()),
        ("capacity", pa.string()),  # spot | on-demand
        ("priority", pa.string()),  # normal | high: the run's priority (run tag odins-ravne/priority), which picked the queue
        ("instance_type", pa.string()),
        ("region", pa.string()),
        ("price_source", pa.string()),  # table | live-spot | table (live ignored: <why>)
        ("usd_per_hour", pa.float64()),
        ("attempts", pa.int32()),
        ("runtime_seconds", pa.float64()),  # billable: summed over attempts
        ("usd", pa.float64()),
        ("on_demand_usd", pa.float64()),  # the same seconds at the on-demand price
        ("saving_usd", pa.float64()),  # on_demand_usd - usd: what spot saved
        ("n_media", pa.int64()),  # what this job processed: media for detect, crops for classify
        ("usd_per_media", pa.float64()),
        ("batch_size", pa.int32()),  # Stage 1's batch size in this job (right-sized, or the profile's)
        ("sizing", pa.string()),  # why this instance type and batch size: the right-sizing rule, or "profile"
        ("cold_start_seconds", pa.float64()),  # process start and model load, paid once per job
        ("cameras", pa.int32()),  # cameras this job processed (more than one for a packed job)
        ("status", pa.string()),  # SUCCEEDED | FAILED
        ("started_at", TIMESTAMP),  # UTC
        ("stopped_at", TIMESTAMP),
        ("recorded_at", TIMESTAMP),
    ]
)

# Every persisted table, its schema, and whether it is one Hive partition per camera. Readers, writers,
# the Stage 3 database and the Stage 3 download all take names and keys from here.
TABLES = {
    "media": MEDIA,
    "detections": DETECTIONS,
    "repeat_detections": REPEAT_DETECTIONS,
    "crops": CROPS,
    "species_labels": SPECIES_LABELS,
    "events": EVENTS,
    "deployments": DEPLOYMENTS,
    "camera_operation": CAMERA_OPERATION,
    "costs": COSTS,
    "clusters": CLUSTERS,
    "reviews": REVIEWS,
    "detector_audit": DETECTOR_AUDIT,
}
PER_CAMERA = frozenset(TABLES) - {"clusters"}


def camera_prefix(table: str, camera_id: str) -> str:
    """The Hive folder of one camera's part of a table: ``<table>/camera_id=<id>``."""
    if table not in PER_CAMERA:
        raise KeyError(f"{table!r} is not a per-camera table; known: {', '.join(sorted(PER_CAMERA))}")
    return f"{table}/camera_id={camera_id}"


def camera_key(table: str, camera_id: str, filename: str = "data.parquet") -> str:
    """The key of one file in a camera's part of a table: ``<table>/camera_id=<id>/<file>``."""
    return f"{camera_prefix(table, camera_id)}/{filename}"


DETECTION_CATEGORIES = ("animal", "person", "vehicle")



def empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()
