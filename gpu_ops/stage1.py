"""Stage 1: detect animals, people and vehicles in one camera's media and cut the crops.

Runs inside the GPU job (a local subprocess or an AWS Batch container) and never imports Dagster.
Reads the camera's media manifest from the output storage, skips every media already done under the
current model signature (see :mod:`gpu_ops.workstate`), and commits results chunk by chunk.

Work results are keyed by content (sha256), not by file name: a file that is copied or renamed is not
detected again. A media that does not decode is committed as failed (a property of the file); one
whose bytes cannot be read even after retries (:func:`gpu_ops.media.read_retrying`) is not committed
at all, with the rest of its burst: the stage finishes the camera's other media, then raises
:class:`gpu_ops.media.MediaReadError` naming them, and the next run tries them again. Crops are cut from the full-resolution image the detector saw and written as JPEG to
``crops/camera_id=<id>/<detection_id>.jpg`` under the output root. With the camera background on
(``pipeline.background``), each image's grey thumbnail (:func:`gpu_ops.background.thumbnail`, cut
from the pixels decoded for the detector) is written per chunk to
``_work/thumbnails/camera_id=<id>/<chunk>.parquet`` before the chunk is committed; the ``detections`` asset
reads them to compare each trigger with the camera's others.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from PIL import Image

from gpu_ops import media as media_io
from gpu_ops import schemas, second_look
from gpu_ops.background import BackgroundConfig
from gpu_ops.boxes import share_inside
from gpu_ops.cropper import crop_detection, encode_jpeg
from gpu_ops.engine import run_detection
from gpu_ops.fusion import BurstConfig, fuse_burst
from gpu_ops.media import MediaReadError, read_retrying
from gpu_ops.megadetector_format import detection_id
from gpu_ops.workstate import WorkState, chunk_name, signature

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


def thumbnails_prefix(camera_id: str) -> str:
    """Beside the stages' work, not a table of answers; model-independent, so under no signature."""
    return f"_work/thumbnails/camera_id={camera_id}"


# One row per image: its grey thumbnail for the camera background (gpu_ops.background).
THUMBNAIL_SCHEMA = pa.schema(
    [
        ("sha256", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("infrared", pa.bool_()),
        ("pixels", pa.binary()),  # uint8, row-major, width x height
    ]
)

# Media per committed chunk: small enough that a crash loses little, large enough to batch well.
CHUNK_SIZE = 64


def crop_key(camera_id: str, det_id: str) -> str:
    return schemas.camera_key("crops", camera_id, f"{det_id}.jpg")


@dataclass
class StageStats:
    media_total: int = 0
    media_skipped: int = 0  # already done by an earlier run
    media_processed: int = 0
    media_failed: int = 0
    media_unread: int = 0  # could not be read this run: not committed, tried again next run
    frames: int = 0
    detections: int = 0
    crops: int = 0
    seconds: float = 0.0
    cold_start_s: float = 0.0
    decode_seconds: float = 0.0  # summed over decode threads
    inference_seconds: float = 0.0
    bursts_fused: int = 0
    motion_detections: int = 0  # boxes only the burst's motion found (and verification or tracking kept)
    motion_seconds: float = 0.0
    second_looks: int = 0  # infrared frames looked at again (gpu_ops.second_look)
    second_look_detections: int = 0  # boxes only the second look found
    second_look_seconds: float = 0.0
    failures: dict = field(default_factory=dict)
    unread: dict = field(default_factory=dict)  # file path -> why it could not be read

    def as_metadata(self) -> dict:
        rate = self.frames / self.seconds if self.seconds else 0.0
        out = {k: v for k, v in self.__dict__.items() if k not in ("failures", "unread")}
        out["frames_per_s"] = round(rate, 3)
        out["seconds"] = round(self.seconds, 3)
        for key in ("cold_start_s", "decode_seconds", "inference_seconds", "motion_seconds", "second_look_seconds"):
            out[key] = round(out[key], 3)
        return out


def stage1_signature(profile) -> tuple[str, dict]:
    s1, crops = profile.pipeline.stage1, profile.pipeline.crops
    parts = {
        "model": s1.model,
        "image_size": s1.image_size,
        "confidence_threshold": s1.confidence_threshold,
        "iou_threshold": s1.iou_threshold,
        "animal_score": s1.animal_score,
        "video_every_seconds": s1.video_every_seconds,
        "video_max_frames": s1.video_max_frames,
        "bursts": profile.pipeline.bursts,
        "crop_min_confidence": crops.min_confidence,
        "crop_pad_fraction": crops.pad_fraction,
        "crop_max_side": crops.max_side,
    }
    if profile.pipeline.background.enabled:  # media detected without a thumbnail are detected again
        parts["background_thumbnail_side"] = BackgroundConfig.side
    if second_look.applies(s1.infrared_second_look, s1.model):  # a look at infrared frames that came back empty
        parts["infrared_second_look"] = {"clip": second_look.CLIP, "grid": second_look.GRID, "below": second_look.BELOW}
    return signature(parts), parts


def pending_media(manifest: pa.Table, done: dict) -> list[dict]:
    """Unique ok media (by content) not yet done, in a stable order."""
    seen: set[str] = set()
    pending = []
    rows = manifest.filter(pc.equal(manifest["status"], "ok")).sort_by(
        [("file_path", "ascending")]
    )
    for row in rows.select(["sha256", "file_path", "media_type", "burst_id", "burst_index", "burst_size"]).to_pylist():
        if row["sha256"] in seen or row["sha256"] in done:
            continue
        seen.add(row["sha256"])
        pending.append(row)
    return pending


def chunks_of_whole_bursts(pending: list[dict], size: int) -> list[list[dict]]:
    """Chunks of about ``size`` media that never split a burst: motion needs all of its frames."""
    by_burst: dict[str, list[dict]] = {}
    for item in pending:
        by_burst.setdefault(item["burst_id"] or item["sha256"], []).append(item)
    chunks, current = [], []
    for members in by_burst.values():
        if current and len(current) + len(members) > size:
            chunks.append(current)
            current = []
        current.extend(sorted(members, key=lambda m: m["burst_index"] or 0))
    if current:
        chunks.append(current)
    return chunks


@contextlib.contextmanager
def _readable_copy(input_storage, key: str):
    """A local copy of the media (the file itself when local) whose bytes were read, with retries.

    A local file is opened here, before any decoder sees it, so that a read error surfaces as
    :class:`MediaReadError` and never as the decoder's "not a valid file".
    """
    with contextlib.ExitStack() as stack:

        def fetch():
            path = stack.enter_context(input_storage.local_copy(key))
            with open(path, "rb") as handle:
                handle.read(1)
            return path

        yield read_retrying(fetch, key)


def _video_frames(item: dict, input_storage, s1) -> list[tuple[int, float, np.ndarray]]:
    with _readable_copy(input_storage, item["file_path"]) as path:
        frames = list(
            media_io.read_video_frames(path, every_seconds=s1.video_every_seconds, max_frames=s1.video_max_frames)
        )
    if not frames:
        raise ValueError("video has no decodable frames")
    return frames


def _image_source(item: dict, input_storage):
    """What the engine decodes: a reader called on a decode thread, retrying read errors; one that
    persists reaches ``on_result`` as :class:`MediaReadError`, a decode error as itself."""
    key = item["file_path"]
    return lambda: read_retrying(lambda: input_storage.read_bytes(key), key)


def run_stage1(
    *,
    camera_id: str,
    input_storage,
    output_storage,
    profile,
    detector_factory: Callable,
    log: Callable[[str], None] = print,
    shard_keys: list[str] | None = None,
) -> StageStats:
    """Detect and crop every pending media of a camera; returns what was done.

    ``shard_keys`` (sha256s) restricts the work to one Batch job's share of a sharded camera: the
    launcher fixes each share before any job starts, so shards that start late or are retried never
    shift into each other's media.
    """
    s1, crop_cfg = profile.pipeline.stage1, profile.pipeline.crops
    sig, _ = stage1_signature(profile)
    state = WorkState(output_storage, "detect", sig, camera_id)
    manifest = output_storage.read_parquet(schemas.camera_prefix("media", camera_id))
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
    if not pending:
        log(f"camera {camera_id}: nothing to detect ({stats.media_skipped} media already done)")
        return stats

    started = time.perf_counter()
    detector = detector_factory()
    stats.cold_start_s = getattr(detector, "cold_start_s", 0.0)
    log(f"camera {camera_id}: detecting {len(pending)} media with {detector.name} (cold start {stats.cold_start_s:.1f}s)")
    burst_cfg = BurstConfig.from_mapping(profile.pipeline.bursts)
    done_media = 0
    for chunk in chunks_of_whole_bursts(pending, CHUNK_SIZE):
        thumbs: dict[str, tuple[np.ndarray, bool]] = {}
        rows, failures, unread = _detect_chunk(chunk, camera_id, input_storage, output_storage, detector, s1, crop_cfg, burst_cfg, stats,
                                               thumbs if profile.pipeline.background.enabled else None)
        readable = [m["sha256"] for m in chunk if m["sha256"] not in unread]
        if readable and profile.pipeline.background.enabled:
            _write_thumbnails(output_storage, camera_id, readable, thumbs)
        if readable:
            state.commit(readable, pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), failures)
        stats.media_processed += len(readable) - len(failures)
        stats.media_failed += len(failures)
        stats.media_unread += len(chunk) - len(readable)
        stats.failures.update(failures)
        stats.unread.update({m["file_path"]: unread[m["sha256"]] for m in chunk if m["sha256"] in unread})
        elapsed = time.perf_counter() - started
        done_media += len(chunk)
        log(
            f"camera {camera_id}: {done_media}/{len(pending)} media, "
            f"{stats.detections} detections, {stats.frames / max(elapsed, 1e-9):.2f} frames/s"
        )
    stats.seconds = time.perf_counter() - started
    if stats.unread:
        for reason in list(stats.unread.values())[:20]:
            log(f"camera {camera_id}: {reason}")
        raise MediaReadError(
            f"camera {camera_id}: {stats.media_unread} media could not be read and are not marked done "
            f"(first: {next(iter(stats.unread.values()))}); the other {stats.media_processed + stats.media_failed} "
            "were committed, and the next run tries these again"
        )
    return stats


def _write_thumbnails(output_storage, camera_id: str, keys: list[str], thumbs: dict[str, tuple[np.ndarray, bool]]) -> None:
    """The chunk's thumbnails, under the chunk's own name: a chunk done again after a crash
    overwrites its file, and readers keep one row per sha256."""
    rows = [{"sha256": k, "width": thumbs[k][0].shape[1], "height": thumbs[k][0].shape[0], "infrared": thumbs[k][1],
             "pixels": np.ascontiguousarray(thumbs[k][0]).tobytes()} for k in keys if k in thumbs]
    if rows:
        output_storage.write_parquet(f"{thumbnails_prefix(camera_id)}/{chunk_name(keys)}.parquet",
                                     pa.Table.from_pylist(rows, schema=THUMBNAIL_SCHEMA))


def read_thumbnails(output_storage, camera_id: str) -> dict[str, tuple[np.ndarray, bool]]:
    """sha256 -> (grey thumbnail, infrared) of every image of the camera Stage 1 kept one of."""
    table = output_storage.read_parquet(thumbnails_prefix(camera_id))
    out = {}
    for row in (table.select(THUMBNAIL_SCHEMA.names).to_pylist() if table is not None else []):
        pixels = np.frombuffer(row["pixels"], dtype=np.uint8).reshape(row["height"], row["width"])
        out[row["sha256"]] = (pixels, bool(row["infrared"]))
    return out


def read_infrared(output_storage, camera_id: str) -> dict[str, bool]:
    """sha256 -> infrared of every image of the camera Stage 1 kept a thumbnail of (the pixels unread)."""
    table = output_storage.read_parquet(thumbnails_prefix(camera_id), columns=["sha256", "infrared"])
    return {} if table is None else dict(zip(table.column("sha256").to_pylist(), map(bool, table.column("infrared").to_pylist())))


def _detect_chunk(chunk, camera_id, input_storage, output_storage, detector, s1, crop_cfg, burst_cfg, stats, thumbs=None):
    """Detect, fuse bursts and crop one chunk of media: ``(rows, failures, unread)``, never raised.

    ``failures`` (sha256 -> reason) are the media's own; ``unread`` (sha256 -> reason) are media
    that could not be read, widened to their whole burst (motion needs all of its frames), and have
    no rows: they are left for the next run.

    Images go through the engine (decoding overlapped with inference, crops cut on the decode
    threads); video frames through the detector directly; then each burst of enough frames is fused
    with its motion proposals (:mod:`gpu_ops.fusion`), which may add boxes or raise confidences.
    """
    # (sha256, frame_number) -> (frame offset in seconds, detections, {detection index: crop JPEG})
    found: dict[tuple[str, int], tuple[float, list, dict]] = {}
    failures: dict[str, str] = {}
    unread: dict[str, str] = {}

    def on_result(key, detections, crops):
        if isinstance(crops, MediaReadError):
            unread[key] = str(crops)
        elif isinstance(crops, BaseException):
            failures[key] = f"stage 1 could not decode: {crops}"
        else:
            found[(key, 0)] = (0.0, list(detections), dict(crops))

    images = [m for m in chunk if m["media_type"] == "image"]
    looks_again = second_look.applies(s1.infrared_second_look, s1.model)
    engine_stats = run_detection(
        [(m["sha256"], _image_source(m, input_storage)) for m in images],
        detector,
        crop_min_conf=crop_cfg.min_confidence,
        on_result=on_result,
        decode_workers=s1.decode_workers,
        batch_size=s1.batch_size,
        crop_pad_fraction=crop_cfg.pad_fraction,
        crop_quality=crop_cfg.jpeg_quality,
        crop_max_side=crop_cfg.max_side,
        on_thumbnail=None if thumbs is None else lambda key, grey, infrared: thumbs.__setitem__(key, (grey, infrared)),
        thumbnail_side=BackgroundConfig.side,
        second_look_conf=second_look.BELOW if looks_again else None,
    )
    stats.decode_seconds += engine_stats.decode_seconds
    stats.inference_seconds += engine_stats.inference_seconds
    stats.second_looks += engine_stats.second_looks
    stats.second_look_seconds += engine_stats.second_look_seconds
    for item in (m for m in chunk if m["media_type"] == "video"):
        try:
            frames = _video_frames(item, input_storage, s1)
        except MediaReadError as err:
            unread[item["sha256"]] = str(err)
            continue
        except Exception as err:  # a clip that probed fine but no longer decodes is recorded, not fatal
            failures[item["sha256"]] = f"stage 1 could not decode: {err}"
            continue
        if looks_again:
            started = time.perf_counter()
            detected, looked = second_look.detect(detector, [f[2] for f in frames], second_look.BELOW)
            stats.second_looks += looked
            stats.second_look_seconds += time.perf_counter() - started  # the first look's inference included
        else:
            detected = detector.detect([f[2] for f in frames])
        for (frame_number, offset, array), dets in zip(frames, detected):
            crops = {
                i: encode_jpeg(crop_detection(array, d.bbox, pad_fraction=crop_cfg.pad_fraction, max_side=crop_cfg.max_side), quality=crop_cfg.jpeg_quality)
                for i, d in enumerate(dets)
                if d.conf >= crop_cfg.min_confidence
            }
            found[(item["sha256"], frame_number)] = (offset, list(dets), crops)
    _fuse_bursts(images, input_storage, detector, crop_cfg, burst_cfg, found, failures, unread, stats)
    for item in chunk:
        partner = next((m for m in chunk if m["burst_id"] and m["burst_id"] == item["burst_id"] and m["sha256"] in unread), None)
        if partner is not None and item["sha256"] not in unread:
            unread[item["sha256"]] = f"{item['file_path']} waits for its burst: {unread[partner['sha256']]}"
    for sha256 in unread:
        failures.pop(sha256, None)

    rows = []
    for (sha256, frame_number), (offset, dets, crops) in sorted(found.items()):
        if sha256 in unread:
            continue
        stats.frames += 1
        for index, det in enumerate(dets):
            crop_path, crop_w, crop_h = None, None, None
            if index in crops:
                crop_path = crop_key(camera_id, detection_id(sha256, frame_number, index))
                output_storage.write_bytes(crop_path, crops[index])
                with Image.open(io.BytesIO(crops[index])) as crop_image:
                    crop_w, crop_h = crop_image.size
                stats.crops += 1
            rows.append(
                {
                    "sha256": sha256,
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
            stats.second_look_detections += rows[-1]["source"] == second_look.SOURCE
    return rows, failures, unread


# Burst frames are decoded again at this size (draft mode, cheap) for the motion model and for the
# crops of boxes only motion found: enough pixels to verify a small animal, a fraction of a full decode.
BURST_FRAME_SIDE = 1280


# A motion-only box lying this much inside a detector box is a moving part of that animal (a leg, the
# head): counted as an animal of its own it would inflate the event's count.
PART_OF_DETECTION = 0.7


def _without_parts(fused: list) -> list:
    """Drop motion-only boxes that are parts of a detector box; detector boxes keep their indices."""
    boxes = [d.bbox for d in fused if d.source != "motion"]
    return [d for d in fused if d.source != "motion" or all(share_inside(d.bbox, b) < PART_OF_DETECTION for b in boxes)]


def _fuse_bursts(images, input_storage, detector, crop_cfg, burst_cfg, found, failures, unread, stats):
    bursts: dict[str, list[dict]] = {}
    for item in images:
        if item["burst_id"] and (item["sha256"], 0) in found:
            bursts.setdefault(item["burst_id"], []).append(item)
    for members in bursts.values():
        if not burst_cfg.applies_to(len(members)) or any(m["sha256"] in failures or m["sha256"] in unread for m in members):
            continue
        members.sort(key=lambda m: m["burst_index"])
        frames = []
        try:
            for member in members:
                with _readable_copy(input_storage, member["file_path"]) as path:
                    frames.append(media_io.load_image(path, max_side=BURST_FRAME_SIDE))
        except MediaReadError as err:
            unread[member["sha256"]] = str(err)
            continue
        result = fuse_burst(frames, [found[(m["sha256"], 0)][1] for m in members], detector, config=burst_cfg)
        stats.bursts_fused += 1
        stats.motion_seconds += result.motion_s + result.verify_s
        for member, frame, fused in zip(members, frames, result.detections):
            offset, before, crops = found[(member["sha256"], 0)]
            fused = _without_parts(fused)
            crops = dict(crops)
            for index, det in enumerate(fused):
                if det.source == "motion":
                    stats.motion_detections += 1
                # Detector boxes keep their index and crop; a box only motion found, or one whose
                # confidence fusion raised past the crop threshold, is cut from the burst frame.
                if index not in crops and det.conf >= crop_cfg.min_confidence:
                    crop = crop_detection(frame, det.bbox, pad_fraction=crop_cfg.pad_fraction, max_side=crop_cfg.max_side)
                    crops[index] = encode_jpeg(crop, quality=crop_cfg.jpeg_quality)
            found[(member["sha256"], 0)] = (offset, list(fused), crops)
