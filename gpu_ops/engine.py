"""The Stage 1 engine: keeps the detector busy while threads decode the next images.

What it does differently from a plain loop (open, detect, crop, one image at a time):

* **Decoding overlaps inference.** ``decode_workers`` threads read and decode images while the
  calling thread runs the model on the previous batch. Pillow, OpenCV, ONNX Runtime and torch all
  release the GIL for their heavy work, so threads are enough and nothing is pickled.
* **Reduced-size decoding.** A JPEG is decoded with Pillow's draft mode straight to the smallest
  1/2, 1/4 or 1/8 scale that is still at least the model's input size: a 4000x3000 photo becomes
  1000x750 for a 640 model, decoded at a fraction of the full cost (libjpeg skips most of the IDCT).
  Boxes are normalized, so they are the same on the reduced and on the full image.
* **Letterboxing on arrays, batched inference**, with the detector's own out-of-memory halving.
* **Crops from the full-resolution image, decoded once.** The encoded bytes are read once and held;
  only an image with a detection at or above ``crop_min_conf`` is decoded at full resolution, from
  those bytes, and its crops are cut and encoded from that single decode. An image that was decoded
  at full size anyway (a small JPEG, a PNG, a Pillow image handed in) is cropped from what is held.
  Camera-trap sets are mostly empty frames, which therefore cost only the reduced decode.

Results match the straightforward path (full decode, ``Detector.detect``) to within resampling
noise: ``bench/stage1.py`` measures it (IoU and confidence of matched boxes).

Items are ``(key, source)`` pairs. ``source`` is a path (``str`` / ``os.PathLike``), the encoded
bytes, a ``PIL.Image.Image``, or a zero-argument callable returning one of those (called in a worker
thread, so a slow read from S3 overlaps too). ``on_result(key, detections, crops)`` is called once
per item from the calling thread, in completion order: ``crops`` maps a detection's index in
``detections`` to its JPEG bytes. A failed item is reported as ``on_result(key, exception, {})`` and
the run goes on; an exception raised by ``on_result`` itself stops the run.
"""

from __future__ import annotations

import io
import logging
import math
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Union

import numpy as np
from PIL import Image

from gpu_ops.cropper import crop_box, encode_jpeg
from gpu_ops.detector import Detection, Detector, Letterbox

log = logging.getLogger("gpu_ops")

Source = Union[str, "os.PathLike[str]", bytes, Image.Image]
Item = tuple[Hashable, Union[Source, Callable[[], Source]]]
# Decode at least this many times the model's input size, then area-resize: the DCT-domain scaling
# of a reduced decode then leaves the model input within resampling noise of a full decode
# (measured: IoU >= 0.9x, conf within 0.02 at 2; at 1 confidences moved by up to 0.04).
DRAFT_MARGIN = 2
OnResult = Callable[[Hashable, Union[list[Detection], BaseException], dict[int, bytes]], None]


@dataclass
class EngineStats:
    images: int = 0  # items that produced detections (possibly none)
    failed: int = 0  # items reported to on_result as an exception
    detections: int = 0
    crops: int = 0
    batches: int = 0
    reduced_decodes: int = 0  # JPEGs decoded at 1/2, 1/4 or 1/8 for the detector
    full_decodes: int = 0  # full-resolution decodes (for detection or for crops)
    seconds: float = 0.0  # wall time of run_detection
    decode_seconds: float = 0.0  # summed over worker threads
    inference_seconds: float = 0.0  # the calling thread, inside the model
    crop_seconds: float = 0.0  # summed over worker threads (full decode + cut + encode)
    final_batch_size: int = 0  # lower than asked for when out-of-memory errors halved it

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "images_per_s": self.images_per_s}


@dataclass
class _Decoded:
    canvas: np.ndarray
    box: Letterbox
    size: tuple[int, int]  # the full image's width, height
    data: bytes | None  # the encoded file, kept for a full decode when crops are needed
    full: Image.Image | None  # the full-resolution image, when it was decoded anyway
    reduced: bool
    seconds: float


@dataclass
class _Counters:
    lock: threading.Lock = field(default_factory=threading.Lock)
    decode_seconds: float = 0.0
    crop_seconds: float = 0.0
    reduced: int = 0
    full: int = 0

    def add(self, **amounts: float) -> None:
        with self.lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)


def _read(source: Union[Source, Callable[[], Source]]) -> Source:
    value = source() if callable(source) else source
    if isinstance(value, (str, os.PathLike)):
        with open(value, "rb") as handle:
            return handle.read()
    if isinstance(value, (bytes, Image.Image)):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"an item's source must be a path, bytes or a PIL image (or a callable returning one), got {type(value).__name__}")


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_for_detection(source: Union[Source, Callable[[], Source]], detector: Detector, counters: _Counters | None = None) -> _Decoded:
    """Read and decode one item at the smallest size the detector can use, and letterbox it."""
    started = time.perf_counter()
    value = _read(source)
    data: bytes | None = None
    if isinstance(value, Image.Image):
        image, size = _rgb(value), value.size
        full, reduced = image, False
    else:
        data = value
        image = Image.open(io.BytesIO(data))
        size = image.size
        if image.format == "JPEG":
            # Ask for the letterboxed size; draft picks the smallest DCT scale at least that big.
            scale = DRAFT_MARGIN * detector.image_size / max(size)
            if scale < 1:
                image.draft("RGB", (math.ceil(size[0] * scale), math.ceil(size[1] * scale)))
        image = _rgb(image)
        image.load()
        reduced = image.size != size
        full = None if reduced else image
    canvas, box = detector.prepare(np.asarray(image))
    seconds = time.perf_counter() - started
    if counters is not None:
        counters.add(decode_seconds=seconds, reduced=int(reduced), full=int(not reduced and data is not None))
    return _Decoded(canvas, box, size, data, full, reduced, seconds)


def cut_crops(decoded: _Decoded, detections: list[Detection], crop_min_conf: float, *, pad_fraction: float = 0.1,
              min_side: int = 32, quality: int = 90, counters: _Counters | None = None) -> dict[int, bytes]:
    """JPEG crops, from the full-resolution image, of the detections at or above ``crop_min_conf``."""
    wanted = [i for i, d in enumerate(detections) if d.conf >= crop_min_conf]
    if not wanted:
        return {}
    started = time.perf_counter()
    full = decoded.full
    decoded_now = full is None
    if full is None:
        assert decoded.data is not None  # reduced decodes always keep the bytes
        full = _rgb(Image.open(io.BytesIO(decoded.data)))
        full.load()
        if full.size != decoded.size:
            raise RuntimeError(f"the full decode is {full.size}, the first decode said {decoded.size}")
    width, height = full.size
    crops = {}
    for index in wanted:
        # Pillow crops without converting the whole image to an array: only the region is copied.
        region = full.crop(crop_box(width, height, detections[index].bbox, pad_fraction, min_side))
        crops[index] = encode_jpeg(region, quality=quality)
    if counters is not None:
        counters.add(crop_seconds=time.perf_counter() - started, full=int(decoded_now))
    return crops


def run_detection(
    items: Iterable[Item],
    detector: Detector,
    *,
    crop_min_conf: float,
    on_result: OnResult,
    decode_workers: int = 2,
    batch_size: int = 16,
    crop_pad_fraction: float = 0.1,
    crop_min_side: int = 32,
    crop_quality: int = 90,
) -> EngineStats:
    """Detect on every item and cut crops; see the module docstring for items and callbacks."""
    if batch_size < 1 or decode_workers < 1:
        raise ValueError(f"batch_size ({batch_size}) and decode_workers ({decode_workers}) must be at least 1")
    stats = EngineStats()
    counters = _Counters()
    started = time.perf_counter()
    # Two batches in flight: one being assembled while the previous one is in the model.
    prefetch = 2 * batch_size
    pending: deque[tuple[Hashable, Future]] = deque()
    cropping: deque[tuple[Hashable, list[Detection], Future]] = deque()
    source_iter = iter(items)
    exhausted = False

    def report(key: Hashable, outcome: list[Detection] | BaseException, crops: dict[int, bytes]) -> None:
        if isinstance(outcome, BaseException):
            stats.failed += 1
            log.warning("stage 1 failed for %r: %s", key, outcome)
        else:
            stats.images += 1
            stats.detections += len(outcome)
            stats.crops += len(crops)
        on_result(key, outcome, crops)

    def drain_crops(block: bool) -> None:
        while cropping and (block or cropping[0][2].done()):
            key, detections, future = cropping.popleft()
            try:
                crops = future.result()
            except Exception as exc:  # noqa: BLE001 - a bad file fails its item, not the run
                report(key, exc, {})
            else:
                report(key, detections, crops)

    with ThreadPoolExecutor(max_workers=decode_workers, thread_name_prefix="stage1-decode") as pool:
        try:
            while True:
                while not exhausted and len(pending) < prefetch:
                    try:
                        key, source = next(source_iter)
                    except StopIteration:
                        exhausted = True
                        break
                    pending.append((key, pool.submit(decode_for_detection, source, detector, counters)))
                if not pending:
                    break
                batch: list[tuple[Hashable, _Decoded]] = []
                while pending and len(batch) < batch_size:
                    key, future = pending.popleft()
                    try:
                        batch.append((key, future.result()))
                    except Exception as exc:  # noqa: BLE001
                        report(key, exc, {})
                    # Keep the workers fed while this batch fills.
                    while not exhausted and len(pending) < prefetch:
                        try:
                            next_key, source = next(source_iter)
                        except StopIteration:
                            exhausted = True
                            break
                        pending.append((next_key, pool.submit(decode_for_detection, source, detector, counters)))
                if batch:
                    for (key, decoded), outcome in zip(batch, _infer(detector, batch, stats)):
                        if isinstance(outcome, BaseException):
                            report(key, outcome, {})
                            continue
                        future = pool.submit(
                            cut_crops, decoded, outcome, crop_min_conf, pad_fraction=crop_pad_fraction,
                            min_side=crop_min_side, quality=crop_quality, counters=counters,
                        )
                        cropping.append((key, outcome, future))
                drain_crops(block=False)
            drain_crops(block=True)
        except BaseException:
            for _, future in pending:
                future.cancel()
            for _, _, future in cropping:
                future.cancel()
            raise

    stats.seconds = time.perf_counter() - started
    stats.decode_seconds = counters.decode_seconds
    stats.crop_seconds = counters.crop_seconds
    stats.reduced_decodes = counters.reduced
    stats.full_decodes = counters.full
    stats.final_batch_size = min(batch_size, detector.max_batch or batch_size)
    return stats


def _infer(detector: Detector, batch: list[tuple[Hashable, _Decoded]], stats: EngineStats) -> list[list[Detection] | BaseException]:
    """One batch through the model; if the batch fails (not for memory), each item alone, so one
    bad input fails only itself."""
    started = time.perf_counter()
    stats.batches += 1
    try:
        return list(detector.detect_prepared([d.canvas for _, d in batch], [d.box for _, d in batch]))
    except Exception as exc:  # noqa: BLE001
        if len(batch) == 1:
            return [exc]
        log.warning("a batch of %d failed in the model (%s): retrying its images one by one", len(batch), exc)
        outcomes: list[list[Detection] | BaseException] = []
        for _, decoded in batch:
            try:
                outcomes.append(detector.detect_prepared([decoded.canvas], [decoded.box])[0])
            except Exception as single:  # noqa: BLE001
                outcomes.append(single)
        return outcomes
    finally:
        stats.inference_seconds += time.perf_counter() - started
