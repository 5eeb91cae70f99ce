"""Stage 2: species labels for one camera's crops.

Reads the camera's published crop index, skips detections already classified under the current
classifier signature, and commits results chunk by chunk like Stage 1 (:mod:`gpu_ops.workstate`).
Only animal crops go to a species model; people and vehicles map straight to their taxon.
"""

from __future__ import annotations

import io
import time
from typing import Callable

import numpy as np
import pyarrow as pa
from PIL import Image

from gpu_ops import schemas
from gpu_ops.classifier import taxon_for_label
from gpu_ops.stage1 import StageStats
from gpu_ops.workstate import WorkState, signature, work_prefix

RESULT_SCHEMA = pa.schema(
    [
        ("detection_id", pa.string()),
        ("species", pa.string()),
        ("scientific_name", pa.string()),
        ("taxon_rank", pa.string()),
        ("taxon_class", pa.string()),
        ("score", pa.float32()),
        ("classification_source", pa.string()),
    ]
)

CHUNK_SIZE = 256


def stage2_signature(profile) -> str:
    s2 = profile.pipeline.stage2
    return signature({"classifier": s2.classifier, "labels": s2.labels, "image_size": s2.image_size})


def run_stage2(
    *,
    camera_id: str,
    output_storage,
    profile,
    classifier_factory: Callable,
    log: Callable[[str], None] = print,
) -> StageStats:
    s2 = profile.pipeline.stage2
    state = WorkState(output_storage, work_prefix("classify", stage2_signature(profile), camera_id))
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
    log(f"camera {camera_id}: classifying {len(pending)} crops with {classifier.name}")
    for chunk_start in range(0, len(pending), CHUNK_SIZE):
        chunk = pending[chunk_start : chunk_start + CHUNK_SIZE]
        results, failures = _classify_chunk(chunk, output_storage, classifier, s2.batch_size)
        state.commit([r["detection_id"] for r in chunk], pa.Table.from_pylist(results, schema=RESULT_SCHEMA), failures)
        stats.media_processed += len(chunk) - len(failures)
        stats.media_failed += len(failures)
        stats.detections += len(results)
        stats.failures.update(failures)
        log(f"camera {camera_id}: {chunk_start + len(chunk)}/{len(pending)} crops classified")
    stats.seconds = time.perf_counter() - started
    return stats


def _row(det_id, taxon, score, source):
    return {
        "detection_id": det_id,
        "species": taxon.species,
        "scientific_name": taxon.scientific_name,
        "taxon_rank": taxon.taxon_rank,
        "taxon_class": taxon.taxon_class,
        "score": score,
        "classification_source": source,
    }


def _classify_chunk(chunk, storage, classifier, batch_size):
    results, failures = [], {}
    to_model = []
    for row in chunk:
        if row["category"] != "animal" or not classifier.needs_images:
            if row["category"] != "animal":
                taxon, score, source = taxon_for_label(row["label"], row["category"]), row["conf"], "detector-category"
            else:
                (taxon, score), source = classifier.classify([row], [None])[0], classifier.name
            results.append(_row(row["detection_id"], taxon, score, source))
            continue
        try:
            crop = np.asarray(Image.open(io.BytesIO(storage.read_bytes(row["crop_path"]))).convert("RGB"))
            to_model.append((row, crop))
        except Exception as err:
            failures[row["detection_id"]] = f"crop {row['crop_path']} unreadable: {err}"
    for start in range(0, len(to_model), batch_size):
        batch = to_model[start : start + batch_size]
        for (row, _), (taxon, score) in zip(batch, classifier.classify([b[0] for b in batch], [b[1] for b in batch])):
            results.append(_row(row["detection_id"], taxon, score, classifier.name))
    return results, failures
