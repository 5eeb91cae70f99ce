"""Stage 2: species labels for one camera's crops.

Reads the camera's published crop index, skips detections already classified under the current
classifier signature, and commits results chunk by chunk like Stage 1 (:mod:`gpu_ops.workstate`).
A classifier sees the Stage 1 categories it names (``Classifier.categories``); the others map
straight to their taxon (people to *Homo sapiens*, vehicles to ``vehicle``).

Where the camera stood matters to SpeciesNet's geofence: :func:`camera_geography` reads it from the
camera's published ``deployments`` table (``country`` / ``admin1_region`` from deployments.csv), with
``pipeline.stage2.country`` / ``admin1_region`` as the default for deployments that name none. A
camera moved between places gets, per detection, the place of the deployment whose window holds the
detection's (clock-corrected) time. The places are part of the work signature, so correcting a
camera's country re-labels its crops; a profile and camera with no place keep the signature they had.
"""

from __future__ import annotations

import io
import time
from datetime import timedelta
from typing import Callable

import numpy as np
import pyarrow as pa
from PIL import Image

from gpu_ops import schemas
from gpu_ops.classifier import taxon_columns, taxon_for_label
from gpu_ops.classifier_speciesnet import check_geography
from gpu_ops.cropper import crop_box
from gpu_ops.stage1 import StageStats
from gpu_ops.workstate import WorkState, signature

RESULT_SCHEMA = pa.schema(
    [
        ("detection_id", pa.string()),
        *(schemas.SPECIES_LABELS.field(name) for name in (
            "species", "scientific_name", "taxon_rank", "taxon_class", "score", "classification_source",
            "classifier_label", "prediction_source", "rollup_level", "geofenced", "raw_label", "raw_score",
            "country", "admin1_region", "top_classifications",
        )),
    ]
)
# The columns species_labels takes from a Stage 2 result.
LABEL_COLUMNS = tuple(name for name in RESULT_SCHEMA.names if name != "detection_id")

CHUNK_SIZE = 256


def camera_geography(output_storage, camera_id: str, profile) -> list[dict]:
    """The places the camera stood, in the order they are tried: its deployments that name a country
    (with their time windows), then the profile's default (no window); empty when none is known."""
    s2 = profile.pipeline.stage2
    places = []
    deployments = output_storage.read_parquet(schemas.camera_prefix("deployments", camera_id), empty=schemas.DEPLOYMENTS)
    for dep in deployments.to_pylist():
        if dep.get("country"):
            country, region = check_geography(dep["country"], dep.get("admin1_region"), f"deployment {dep['deployment_id']}")
            places.append({"start": dep["start"], "end": dep["end"], "clock_offset_s": dep["clock_offset_s"] or 0.0,
                           "country": country, "admin1_region": region})
    country, region = check_geography(s2.country, s2.admin1_region, "pipeline.stage2")
    if country:
        places.append({"start": None, "end": None, "clock_offset_s": 0.0, "country": country, "admin1_region": region})
    return places


def place_at(places: list[dict], timestamp) -> dict:
    """``country`` / ``admin1_region`` of the first place whose window holds the camera time; {} if none."""
    for place in places:
        when = timestamp + timedelta(seconds=place["clock_offset_s"]) if timestamp is not None else None
        inside = when is None or ((place["start"] is None or place["start"] <= when) and (place["end"] is None or when <= place["end"]))
        if inside or (place["start"] is None and place["end"] is None):
            return {"country": place["country"], "admin1_region": place["admin1_region"]}
    return {}


def stage2_signature(profile, places: list[dict] = ()) -> str:
    s2 = profile.pipeline.stage2
    parts = {"classifier": s2.classifier, "labels": s2.labels, "image_size": s2.image_size}
    if places:
        parts.update(places=list(places), geofence=s2.geofence)
    return signature(parts)


def stage2_state(output_storage, camera_id: str, profile) -> WorkState:
    """The camera's Stage 2 checkpoints under the current classifier and places."""
    places = camera_geography(output_storage, camera_id, profile)
    return WorkState(output_storage, "classify", stage2_signature(profile, places), camera_id)


def run_stage2(
    *,
    camera_id: str,
    output_storage,
    profile,
    classifier_factory: Callable,
    log: Callable[[str], None] = print,
) -> StageStats:
    s2 = profile.pipeline.stage2
    state = stage2_state(output_storage, camera_id, profile)
    crops = output_storage.read_parquet(schemas.camera_prefix("crops", camera_id))
    stats = StageStats()
    if crops is None:
        raise FileNotFoundError(
            f"camera '{camera_id}' has no crop index under {output_storage.uri('crops')}: materialize crops first"
        )
    done = state.done()
    rows = sorted(crops.to_pylist(), key=lambda r: r["detection_id"])
    pending = [r for r in rows if r["detection_id"] not in done]
    stats.media_total, stats.media_skipped = len(rows), len(rows) - len(pending)
    if not pending:
        log(f"camera {camera_id}: nothing to classify ({stats.media_skipped} crops already done)")
        return stats
    started = time.perf_counter()
    classifier = classifier_factory()
    context = _crop_context(output_storage, camera_id, profile) if classifier.needs_boxes else {}
    log(f"camera {camera_id}: classifying {len(pending)} crops with {classifier.name}")
    for chunk_start in range(0, len(pending), CHUNK_SIZE):
        chunk = pending[chunk_start : chunk_start + CHUNK_SIZE]
        results, failures = _classify_chunk(chunk, output_storage, classifier, s2.batch_size, context)
        state.commit([r["detection_id"] for r in chunk], pa.Table.from_pylist(results, schema=RESULT_SCHEMA), failures)
        stats.media_processed += len(chunk) - len(failures)
        stats.media_failed += len(failures)
        stats.detections += len(results)
        stats.failures.update(failures)
        log(f"camera {camera_id}: {chunk_start + len(chunk)}/{len(pending)} crops classified")
    stats.seconds = time.perf_counter() - started
    return stats


def _crop_context(output_storage, camera_id: str, profile) -> dict[str, dict]:
    """Per detection: its box inside its crop (normalized ``x, y, w, h``), and its place.

    The crop window is recomputed as Stage 1 cut it (:func:`gpu_ops.cropper.crop_box` on the image
    as displayed); a later downscale of the crop does not move normalized coordinates.
    """
    places = camera_geography(output_storage, camera_id, profile)
    pad = profile.pipeline.crops.pad_fraction
    media = output_storage.read_parquet(schemas.camera_prefix("media", camera_id), empty=schemas.MEDIA)
    sizes = {r["file_path"]: (r["width"], r["height"]) for r in media.select(["file_path", "width", "height"]).to_pylist()}
    detections = output_storage.read_parquet(schemas.camera_prefix("detections", camera_id), empty=schemas.DETECTIONS)
    context = {}
    for det in detections.to_pylist():
        bbox = (det["bbox_x"], det["bbox_y"], det["bbox_w"], det["bbox_h"])
        width, height = sizes.get(det["file_path"]) or (None, None)
        box = (0.0, 0.0, 1.0, 1.0)
        if width and height:
            left, top, right, bottom = crop_box(width, height, bbox, pad)
            cw, ch = right - left, bottom - top
            x0, y0 = max(0.0, (bbox[0] * width - left) / cw), max(0.0, (bbox[1] * height - top) / ch)
            x1, y1 = min(1.0, ((bbox[0] + bbox[2]) * width - left) / cw), min(1.0, ((bbox[1] + bbox[3]) * height - top) / ch)
            if x1 > x0 and y1 > y0:
                box = (x0, y0, x1 - x0, y1 - y0)
        context[det["detection_id"]] = {"box": box, **place_at(places, det["timestamp"])}
    return context


def _classify_chunk(chunk, storage, classifier, batch_size, context):
    results, failures = [], {}
    to_model = []
    for row in chunk:
        if row["category"] not in classifier.categories:
            taxon = taxon_for_label(row["label"], row["category"])
            results.append({"detection_id": row["detection_id"], **taxon_columns(taxon), "score": row["conf"],
                            "classification_source": "detector-category"})
            continue
        row = {**row, **context.get(row["detection_id"], {"box": (0.0, 0.0, 1.0, 1.0)} if classifier.needs_boxes else {})}
        if not classifier.needs_images:
            to_model.append((row, None))
            continue
        try:
            crop = np.asarray(Image.open(io.BytesIO(storage.read_bytes(row["crop_path"]))).convert("RGB"))
            to_model.append((row, crop))
        except Exception as err:
            failures[row["detection_id"]] = f"crop {row['crop_path']} unreadable: {err}"
    for start in range(0, len(to_model), batch_size):
        batch = to_model[start : start + batch_size]
        labels = classifier.label_rows([b[0] for b in batch], [b[1] for b in batch])
        results.extend({"detection_id": row["detection_id"], **label} for (row, _), label in zip(batch, labels))
    return results, failures
