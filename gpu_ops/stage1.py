"""Stage 1: detect animals, people and vehicles in one camera's media and cut the crops.

Runs inside the GPU job (a local subprocess or an AWS Batch container) and never imports Dagster.
Reads the camera's media manifest from the output storage, skips every media already done under the
current model signature (see :mod:`gpu_ops.workstate`), and commits results chunk by chunk.

Work results are keyed by content (sha256), not by file name: a file that is copied or renamed is not
detected again. Crops are cut from the full-resolution image the detector saw and written as JPEG to
``crops/camera_id=<id>/<detection_id>.jpg`` under the output root.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gpu_ops import media as media_io
from gpu_ops.cropper import crop_detection, encode_jpeg
from gpu_ops.workstate import WorkState, signature, work_prefix

# One row per detection, per unique media content; the published table adds file path and time.
RESULT_SCHEMA = pa.schema(
    [
        ("sha256", pa.string()),
        ("frame_number", pa.int32()),
        ("frame_offset_s", pa.float64()),
        ("index", pa.int32()),
        ("category", pa.string()),
        ("label", pa.string()),
        ("conf", pa.float32()),
        ("bbox_x", pa.float32()),
        ("bbox_y", pa.float32()),
        ("bbox_w", pa.float32()),
        ("bbox_h", pa.float32()),
        ("source", pa.string()),
        ("model", pa.string()),
        ("crop_path", pa.string()),
        ("crop_width", pa.int32()),
        ("crop_height", pa.int32()),
    ]
)

# Media per committed chunk: small enough that a crash loses little, large enough to batch well.
CHUNK_SIZE = 64


def detection_id(sha256: str, frame_number: int, index: int) -> str:
    return f"{sha256[:16]}-{frame_number}-{index}"


def crop_key(camera_id: str, det_id: str) -> str:
    return f"crops/camera_id={camera_id}/{det_id}.jpg"


@dataclass
class StageStats:
    media_total: int = 0
    media_skipped: int = 0  # already done by an earlier run
    media_processed: int = 0
    media_failed: int = 0
    frames: int = 0
    detections: int = 0
    crops: int = 0
    seconds: float = 0.0
    cold_start_s: float = 0.0
    failures: dict = field(default_factory=dict)

    def as_metadata(self) -> dict:
        rate = self.frames / self.seconds if self.seconds else 0.0
        out = {k: v for k, v in self.__dict__.items() if k != "failures"}
        out["frames_per_s"] = round(rate, 3)
        out["seconds"] = round(self.seconds, 3)
        out["cold_start_s"] = round(self.cold_start_s, 3)
        return out


def stage1_signature(profile) -> tuple[str, dict]:
    s1, crops = profile.pipeline.stage1, profile.pipeline.crops
    parts = {
        "model": s1.model,
        "image_size": s1.image_size,
        "confidence_threshold": s1.confidence_threshold,
        "iou_threshold": s1.iou_threshold,
        "video_every_seconds": s1.video_every_seconds,
        "video_max_frames": s1.video_max_frames,
        "motion_proposals": s1.motion_proposals,
        "crop_min_confidence": crops.min_confidence,
        "crop_pad_fraction": crops.pad_fraction,
    }
    return signature(parts), parts


def pending_media(manifest: pa.Table, done: dict) -> list[dict]:
    """Unique ok media (by content) not yet done, in a stable order."""
    seen: set[str] = set()
    pending = []
    rows = manifest.filter(pc.equal(manifest["status"], "ok")).sort_by(
        [("file_path", "ascending")]
    )
    for row in rows.select(["sha256", "file_path", "media_type"]).to_pylist():
        if row["sha256"] in seen or row["sha256"] in done:
            continue
        seen.add(row["sha256"])
        pending.append(row)
    return pending


def _frames_of(item: dict, input_storage, s1) -> list[tuple[int, float, np.ndarray]]:
    with input_storage.local_copy(item["file_path"]) as path:
        if item["media_type"] == "video":
            frames = list(
                media_io.read_video_frames(
                    path, every_seconds=s1.video_every_seconds, max_frames=s1.video_max_frames
                )
            )
            if not frames:
                raise ValueError("video has no decodable frames")
            return frames
        return [(0, 0.0, media_io.load_image(path))]


def run_stage1(
    *,
    camera_id: str,
    input_storage,
    output_storage,
    profile,
    detector_factory: Callable,
    log: Callable[[str], None] = print,
    max_media: int | None = None,
    shard_keys: list[str] | None = None,
) -> StageStats:
    """Detect and crop every pending media of a camera; returns what was done.

    ``shard_keys`` (sha256s) restricts the work to one Batch job's share of a sharded camera: the
    launcher fixes each share before any job starts, so shards that start late or are retried never
    shift into each other's media. ``max_media`` stops after that many media (to test resuming).
    """
    s1, crop_cfg = profile.pipeline.stage1, profile.pipeline.crops
    sig, _ = stage1_signature(profile)
    state = WorkState(output_storage, work_prefix("detect", sig, camera_id))
    manifest = output_storage.read_parquet(f"media/camera_id={camera_id}")
    stats = StageStats()
    if manifest is None:
        raise FileNotFoundError(
            f"camera '{camera_id}' has no media manifest under {output_storage.uri('media')}: "
            "materialize raw_images for it first"
        )
    done = state.done()
    pending = pending_media(manifest, done)
    stats.media_total = len(set(manifest.column("sha256").to_pylist()))
    stats.media_skipped = len(done)
    if shard_keys is not None:
        wanted = set(shard_keys)
        pending = [m for m in pending if m["sha256"] in wanted]
    if max_media is not None:
        pending = pending[:max_media]
    if not pending:
        log(f"camera {camera_id}: nothing to detect ({stats.media_skipped} media already done)")
        return stats

    started = time.perf_counter()
    detector = detector_factory()
    stats.cold_start_s = getattr(detector, "cold_start_s", 0.0)
    log(f"camera {camera_id}: detecting {len(pending)} media with {detector.name} (cold start {stats.cold_start_s:.1f}s)")
    for chunk_start in range(0, len(pending), CHUNK_SIZE):
        chunk = pending[chunk_start : chunk_start + CHUNK_SIZE]
        rows, failures = _detect_chunk(chunk, camera_id, input_storage, output_storage, detector, s1, crop_cfg, stats)
        state.commit([m["sha256"] for m in chunk], pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), failures)
        stats.media_processed += len(chunk) - len(failures)
        stats.media_failed += len(failures)
        stats.failures.update(failures)
        elapsed = time.perf_counter() - started
        log(
            f"camera {camera_id}: {chunk_start + len(chunk)}/{len(pending)} media, "
            f"{stats.detections} detections, {stats.frames / max(elapsed, 1e-9):.2f} frames/s"
        )
    stats.seconds = time.perf_counter() - started
    return stats


def _detect_chunk(chunk, camera_id, input_storage, output_storage, detector, s1, crop_cfg, stats):
    """Decode, detect in batches and crop one chunk of media; failures are returned, never raised."""
    frames: list[tuple[dict, int, float, np.ndarray]] = []
    failures: dict[str, str] = {}
    for item in chunk:
        try:
            for frame_number, offset, array in _frames_of(item, input_storage, s1):
                frames.append((item, frame_number, offset, array))
        except Exception as err:  # a file that probed fine but no longer decodes is recorded, not fatal
            failures[item["sha256"]] = f"stage 1 could not decode: {err}"
    rows = []
    for batch_start in range(0, len(frames), s1.batch_size):
        batch = frames[batch_start : batch_start + s1.batch_size]
        results = detector.detect([f[3] for f in batch])
        for (item, frame_number, offset, array), dets in zip(batch, results):
            stats.frames += 1
            for index, det in enumerate(dets):
                det_id = detection_id(item["sha256"], frame_number, index)
                crop_path, crop_w, crop_h = None, None, None
                if det.conf >= crop_cfg.min_confidence:
                    crop = crop_detection(array, det.bbox, pad_fraction=crop_cfg.pad_fraction)
                    crop_path = crop_key(camera_id, det_id)
                    output_storage.write_bytes(crop_path, encode_jpeg(crop, quality=crop_cfg.jpeg_quality))
                    crop_h, crop_w = crop.shape[:2]
                    stats.crops += 1
                rows.append(
                    {
                        "sha256": item["sha256"],
                        "frame_number": frame_number,
                        "frame_offset_s": offset,
                        "index": index,
                        "category": det.category,
                        "label": det.label,
                        "conf": float(det.conf),
                        "bbox_x": det.bbox[0],
                        "bbox_y": det.bbox[1],
                        "bbox_w": det.bbox[2],
                        "bbox_h": det.bbox[3],
                        "source": getattr(det, "source", "detector"),
                        "model": detector.name,
                        "crop_path": crop_path,
                        "crop_width": crop_w,
                        "crop_height": crop_h,
                    }
                )
                stats.detections += 1
    return rows, failures
