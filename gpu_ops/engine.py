"""The Stage 1 engine: keeps the detector busy while threads decode the next images.

What it does differently from a plain loop (open, detect, crop, one image at a time):

* **Decoding overlaps inference.** ``decode_workers`` threads read and decode images while the
  calling thread runs the model on the previous batch. Pillow, OpenCV, ONNX Runtime and torch all
  release the GIL for their heavy work, so threads are enough and nothing is pickled.
* **Reduced-size decoding.** A JPEG is decoded with Pillow's draft mode straight to 1/2, 1/4 or
  1/8 scale: the same power-of-two reduction that ``detector.letterbox`` applies to a full image
  first (``reduction_factor``), so both paths reach nearly the same pixels. A 4000x3000 photo for a
  416 model decodes at 500x375, several times cheaper than a full decode (libjpeg skips most of the
  IDCT and colour work). Boxes are normalized, so they are the same on the reduced and full image.
* **Letterboxing on arrays, batched inference**, with the detector's own out-of-memory halving.
* **Crops without decoding twice where it can be avoided.** The file is read once and its bytes
  held. Crop windows are computed on the full image, exactly as ``cropper.crop_detection`` does.
  Their pixels come from the image already decoded when it has enough of them: an image decoded at
  full size anyway (a small JPEG, a PNG, a Pillow image handed in), or, when ``crop_max_side`` caps
  the crops, a reduced decode that still holds every crop at its capped size. Otherwise the held
  bytes are decoded once more, at full size (or the smallest scale the capped crops need). Images
  without a detection at or above ``crop_min_conf`` (most camera-trap frames) are decoded once, small.

Results match the straightforward path (full decode, ``Detector.detect``) to within resampling
noise: ``bench/stage1.py`` measures it (IoU and confidence of matched boxes).

Items are ``(key, source)`` pairs. ``source`` is a path (``str`` / ``os.PathLike``), the encoded
bytes, a ``PIL.Image.Image``, or a zero-argument callable returning one of those (called in a worker
thread, so a slow read from S3 overlaps too). ``on_result(key, detections, crops)`` is called once
per item from the calling thread, in completion order: ``crops`` maps a detection's index in
``detections`` to its JPEG bytes. A failed item (unreadable, undecodable, refused by the model) is
reported as ``on_result(key, [], exception)`` and the run goes on; an exception raised by
``on_result`` itself stops the run. With ``on_thumbnail``, each decoded item's small grey frame
(:func:`gpu_ops.background.thumbnail`, for the camera-level background) is handed to
``on_thumbnail(key, grey, infrared)`` from the calling thread before its result: it is cut on the
decode thread from the pixels already decoded for the detector, so it costs no decode of its own.
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

from gpu_ops.background import BackgroundConfig, thumbnail
from gpu_ops.cropper import crop_box, encode_jpeg, fit_within
from gpu_ops.detector import Detection, Detector, Letterbox
from gpu_ops.media import displayed_size, exif_orientation, open_image, upright
from gpu_ops.second_look import look_again

log = logging.getLogger("gpu_ops")

Source = Union[str, "os.PathLike[str]", bytes, Image.Image]
Item = tuple[Hashable, Union[Source, Callable[[], Source]]]
OnResult = Callable[[Hashable, list[Detection], Union[dict[int, bytes], BaseException]], None]
OnThumbnail = Callable[[Hashable, np.ndarray, bool], None]


@dataclass
class EngineStats:
    images: int = 0  # items that produced detections (possibly none)
    failed: int = 0  # items reported to on_result as an exception
    detections: int = 0
    crops: int = 0
    batches: int = 0
    reduced_decodes: int = 0  # JPEG decodes at 1/2, 1/4 or 1/8 (for the detector or for capped crops)
    full_decodes: int = 0  # full-resolution decodes of encoded files (for the detector or for crops)
    seconds: float = 0.0  # wall time of run_detection
    decode_seconds: float = 0.0  # summed over worker threads
    inference_seconds: float = 0.0  # the calling thread, inside the model
    crop_seconds: float = 0.0  # summed over worker threads (full decode + cut + encode)
    final_batch_size: int = 0  # lower than asked for when out-of-memory errors halved it
    second_looks: int = 0  # infrared images looked at again, contrast stretched (gpu_ops.second_look)
    second_look_seconds: float = 0.0  # the calling thread, stretching and inference

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
    image: Image.Image  # what was decoded, upright: the full image, or a reduced one (see ``reduced``)
    data: bytes | None  # the encoded file, kept for a second decode when crops need more pixels
    orientation: int  # the file's EXIF orientation, applied again to a second decode
    seconds: float
    thumbnail: tuple[np.ndarray, bool] | None = None  # (grey frame, infrared), when asked for

    @property
    def reduced(self) -> bool:
        return self.image.size != self.size


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


def decode_for_detection(source: Union[Source, Callable[[], Source]], detector: Detector, counters: _Counters | None = None,
                         thumbnail_side: int | None = None) -> _Decoded:
    """Read and decode one item at the smallest size the detector can use, upright, and letterbox it.

    The EXIF orientation is applied here, so the detector sees the photo as displayed and its
    normalized boxes, and every crop, are in the displayed frame (the one ``media.width``/``height``
    describe); a photo stored sideways would otherwise show its animal lying on its side.
    """
    started = time.perf_counter()
    value = _read(source)
    data: bytes | None = None
    if isinstance(value, Image.Image):
        orientation = exif_orientation(value)
        image, size = _rgb(upright(value, orientation)), displayed_size(value, orientation)
    else:
        data = value
        image = open_image(io.BytesIO(data))
        orientation = exif_orientation(image)
        size = displayed_size(image, orientation)
        # The power-of-two reduction the detector's own letterbox applies to a full decode: same model input.
        _draft(image, 1 / detector.decode_reduction(*size))
        image = _rgb(upright(image, orientation))
        image.load()
    canvas, box = detector.prepare(np.asarray(image))
    small = thumbnail(image, thumbnail_side) if thumbnail_side else None
    decoded = _Decoded(canvas, box, size, image, data, orientation, time.perf_counter() - started, small)
    if counters is not None:
        full = int(data is not None and not decoded.reduced)
        counters.add(decode_seconds=decoded.seconds, reduced=int(decoded.reduced), full=full)
    return decoded


def _draft(image: Image.Image, scale: float) -> None:
    """Ask a JPEG to decode at the smallest DCT scale (1/2, 1/4, 1/8) that keeps ``scale`` of its size."""
    if image.format == "JPEG" and scale < 1:
        image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))


def cut_crops(decoded: _Decoded, detections: list[Detection], crop_min_conf: float, *, pad_fraction: float = 0.1,
              min_side: int = 32, max_side: int | None = None, quality: int = 90, counters: _Counters | None = None) -> dict[int, bytes]:
    """JPEG crops of the detections at or above ``crop_min_conf``, as ``cropper.crop_detection`` cuts them.

    The crop windows are computed on the full image. Pixels come from the image already decoded for
    the detector when it has enough of them (a full decode, or a reduced one when ``max_side`` caps
    every crop below its resolution); otherwise the held bytes are decoded once more, at full size,
    or at the smallest DCT scale that still serves every capped crop.
    """
    wanted = [i for i, d in enumerate(detections) if d.conf >= crop_min_conf]
    if not wanted:
        return {}
    started = time.perf_counter()
    width, height = decoded.size
    windows = {i: crop_box(width, height, detections[i].bbox, pad_fraction, min_side) for i in wanted}
    # The share of the full resolution that the most demanding crop needs.
    needed = max(_needed_scale(window, max_side) for window in windows.values())
    source = decoded.image
    decoded_again = False
    if source.width < needed * width - 0.5:
        if decoded.data is None:
            raise RuntimeError("no encoded bytes held to decode the image again for its crops")
        source = open_image(io.BytesIO(decoded.data))
        _draft(source, needed)
        source = _rgb(upright(source, decoded.orientation))
        source.load()
        decoded_again = True
    sx, sy = source.width / width, source.height / height
    crops = {}
    for index, (left, top, right, bottom) in windows.items():
        # Pillow copies only the region: the whole image is never turned into an array.
        region = source.crop((round(left * sx), round(top * sy), round(right * sx), round(bottom * sy)))
        crops[index] = encode_jpeg(fit_within(region, max_side), quality=quality)
    if counters is not None:
        counters.add(crop_seconds=time.perf_counter() - started, full=int(decoded_again and source.size == decoded.size),
                     reduced=int(decoded_again and source.size != decoded.size))
    return crops


def _needed_scale(window: tuple[int, int, int, int], max_side: int | None) -> float:
    side = max(window[2] - window[0], window[3] - window[1])
    return 1.0 if max_side is None or side <= max_side else max_side / side


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
    crop_max_side: int | None = None,
    on_thumbnail: OnThumbnail | None = None,
    thumbnail_side: int = BackgroundConfig.side,
    second_look_conf: float | None = None,
) -> EngineStats:
    """Detect on every item and cut crops; see the module docstring for items and callbacks.

    ``second_look_conf``: look again at the infrared images with no box at or above it, contrast
    stretched (:mod:`gpu_ops.second_look`), before their crops are cut; None: one look."""
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
            on_result(key, [], outcome)
            return
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

        def refill() -> None:
            nonlocal exhausted
            while not exhausted and len(pending) < prefetch:
                try:
                    key, source = next(source_iter)
                except StopIteration:
                    exhausted = True
                    return
                pending.append((key, pool.submit(decode_for_detection, source, detector, counters,
                                                 thumbnail_side if on_thumbnail else None)))

        try:
            while True:
                refill()
                if not pending:
                    break
                batch: list[tuple[Hashable, _Decoded]] = []
                while pending and len(batch) < batch_size:
                    key, future = pending.popleft()
                    try:
                        decoded = future.result()
                    except Exception as exc:  # noqa: BLE001 - a bad file fails its item, not the run
                        report(key, exc, {})
                    else:
                        batch.append((key, decoded))
                        if on_thumbnail is not None:
                            on_thumbnail(key, *decoded.thumbnail)
                    refill()  # keep the workers fed while this batch fills
                if not batch:
                    continue
                outcomes = _infer(detector, batch, stats)
                if second_look_conf is not None:
                    outcomes = _look_again(detector, batch, outcomes, second_look_conf, stats)
                for (key, decoded), outcome in zip(batch, outcomes):
                    if isinstance(outcome, BaseException) or not any(d.conf >= crop_min_conf for d in outcome):
                        report(key, outcome, {})  # nothing to crop: done now, its pixels freed
                        continue
                    future = pool.submit(
                        cut_crops, decoded, outcome, crop_min_conf, pad_fraction=crop_pad_fraction,
                        min_side=crop_min_side, max_side=crop_max_side, quality=crop_quality, counters=counters,
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


def _look_again(detector: Detector, batch: list[tuple[Hashable, _Decoded]], outcomes: list, min_conf: float,
                stats: EngineStats) -> list[list[Detection] | BaseException]:
    """The second look on a batch's infrared images that came back empty; should it fail, the first
    look stands (logged): it is an addition, never a reason to lose an image."""
    started = time.perf_counter()
    done = [i for i, outcome in enumerate(outcomes) if not isinstance(outcome, BaseException)]
    try:
        again, looked = look_again(detector, [batch[i][1].canvas for i in done], [batch[i][1].box for i in done],
                                   [outcomes[i] for i in done], min_conf)
    except Exception as exc:  # noqa: BLE001
        log.warning("the infrared second look failed on a batch of %d (%s): keeping the first look", len(done), exc)
        return outcomes
    finally:
        stats.second_look_seconds += time.perf_counter() - started
    stats.second_looks += looked
    out = list(outcomes)
    for i, dets in zip(done, again):
        out[i] = dets
    return out


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
