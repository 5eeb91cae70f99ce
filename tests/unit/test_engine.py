"""The Stage 1 engine against the straightforward path: same detections, crops from the full image,
failures reported per item, every kind of source accepted."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from gpu_ops.boxes import iou
from gpu_ops.cropper import crop_detection
from gpu_ops.detector import Detection
from gpu_ops.detector_loader import load_detector
from gpu_ops.engine import decode_for_detection, run_detection

import ultralytics

ASSETS = Path(ultralytics.__file__).parent / "assets"


@pytest.fixture(scope="module")
def big_jpegs() -> list[bytes]:
    """Camera-trap-sized JPEGs (3200x2400) made from the bundled photographs."""
    out = []
    for name in ("bus.jpg", "zidane.jpg"):
        image = ImageOps.fit(Image.open(ASSETS / name).convert("RGB"), (3200, 2400), Image.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


@pytest.fixture(scope="module")
def detector():
    return load_detector("default", image_size=416)


def _collect():
    results: dict = {}

    def on_result(key, detections, crops_or_error):
        assert key not in results, "on_result is called once per item"
        if isinstance(crops_or_error, BaseException):
            assert detections == []
            results[key] = (crops_or_error, {})
        else:
            results[key] = (detections, crops_or_error)

    return results, on_result


def test_engine_matches_the_straightforward_path(big_jpegs, detector):
    reference = [detector.detect([np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))])[0] for data in big_jpegs]
    results, on_result = _collect()
    stats = run_detection([(i, data) for i, data in enumerate(big_jpegs)], detector, crop_min_conf=0.3,
                          on_result=on_result, batch_size=2)
    assert stats.images == 2 and stats.failed == 0 and stats.reduced_decodes == 2 and stats.batches == 1
    for index, expected in enumerate(reference):
        found, crops = results[index]
        for want in (d for d in expected if d.conf >= 0.1):
            match = max((d for d in found if d.label == want.label), key=lambda d: iou(d.bbox, want.bbox))
            assert iou(match.bbox, want.bbox) >= 0.9 and abs(match.conf - want.conf) <= 0.02
        # Crops for exactly the detections at or above crop_min_conf, at full resolution.
        assert set(crops) == {i for i, d in enumerate(found) if d.conf >= 0.3} and crops
        full = np.asarray(Image.open(io.BytesIO(big_jpegs[index])).convert("RGB"))
        for i, data in crops.items():
            crop = Image.open(io.BytesIO(data))
            assert crop.size[::-1] == crop_detection(full, found[i].bbox).shape[:2]
    assert stats.crops == sum(len(c) for _, c in results.values())
    assert stats.full_decodes == 2  # one full decode per image with crops, never two


def test_capped_crops_reuse_the_reduced_decode(big_jpegs, detector):
    results, on_result = _collect()
    stats = run_detection([(i, data) for i, data in enumerate(big_jpegs)], detector, crop_min_conf=0.3,
                          on_result=on_result, crop_max_side=400)
    assert stats.full_decodes == 0 and stats.reduced_decodes == 2  # the detector's decode served the crops
    for index, data in enumerate(big_jpegs):
        found, crops = results[index]
        full = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert crops
        for i, crop_data in crops.items():
            expected = crop_detection(full, found[i].bbox, max_side=400).shape[:2]
            height, width = np.asarray(Image.open(io.BytesIO(crop_data))).shape[:2]
            assert max(width, height) <= 400 and abs(width - expected[1]) <= 2 and abs(height - expected[0]) <= 2
            # Same picture as cutting the full decode and downscaling it.
            reference = np.asarray(Image.fromarray(crop_detection(full, found[i].bbox)).resize((width, height)), dtype=float)
            assert np.abs(np.asarray(Image.open(io.BytesIO(crop_data)), dtype=float) - reference).mean() < 8


def test_reduced_decode_is_used_for_big_jpegs_only(big_jpegs, detector):
    decoded = decode_for_detection(big_jpegs[0], detector)
    assert decoded.reduced and decoded.size == (3200, 2400) and decoded.image.size == (800, 600)
    assert decoded.canvas.shape == (416, 416, 3)
    small = io.BytesIO()
    Image.open(io.BytesIO(big_jpegs[0])).resize((600, 450)).save(small, "JPEG")
    decoded = decode_for_detection(small.getvalue(), detector)
    assert not decoded.reduced and decoded.image.size == (600, 450)  # kept for the crops: no second decode


def test_sources_failures_and_empty_images(big_jpegs, detector, tmp_path):
    path = tmp_path / "bus.jpg"
    path.write_bytes(big_jpegs[0])
    png = tmp_path / "grey.png"
    Image.new("L", (500, 300), 128).save(png)
    items = [
        ("path", str(path)),
        ("callable", lambda: path),
        ("pil", Image.open(io.BytesIO(big_jpegs[1]))),
        ("png", png),
        ("missing", tmp_path / "nope.jpg"),
        ("garbage", b"this is not an image"),
        ("truncated", big_jpegs[0][:2000]),
        ("wrong type", 42),
    ]
    results, on_result = _collect()
    stats = run_detection(items, detector, crop_min_conf=0.5, on_result=on_result, batch_size=3, decode_workers=2)
    assert set(results) == {key for key, _ in items}
    for key in ("missing", "garbage", "truncated", "wrong type"):
        assert isinstance(results[key][0], Exception) and results[key][1] == {}
    assert isinstance(results["missing"][0], FileNotFoundError)
    assert "path, bytes or a PIL image" in str(results["wrong type"][0])
    assert results["path"][0] == results["callable"][0]
    assert any(d.label == "bus" for d in results["path"][0])
    assert any(d.label == "person" for d in results["pil"][0]) and results["pil"][1]
    assert results["png"][0] == [] and results["png"][1] == {}
    assert stats.images == 4 and stats.failed == 4 and stats.batches == 2


def test_a_failing_model_fails_only_the_bad_item(detector, big_jpegs):
    class Picky:
        """Wraps the real detector; refuses any batch that holds a tiny image."""

        image_size, max_batch, name = detector.image_size, None, "picky"
        prepare, decode_reduction = detector.prepare, detector.decode_reduction

        def detect_prepared(self, canvases, boxes):
            if any(box.width < 100 for box in boxes):
                raise ValueError("input too small")
            return [[Detection("animal", "dog", 0.9, (0.1, 0.1, 0.2, 0.2))] for _ in canvases]

    tiny = io.BytesIO()
    Image.new("RGB", (40, 40)).save(tiny, "JPEG")
    results, on_result = _collect()
    stats = run_detection([("a", big_jpegs[0]), ("tiny", tiny.getvalue()), ("b", big_jpegs[1])], Picky(),
                          crop_min_conf=0.5, on_result=on_result, batch_size=3)
    assert isinstance(results["tiny"][0], ValueError)
    assert len(results["a"][0]) == 1 and list(results["a"][1]) == [0] and len(results["b"][1]) == 1
    assert stats.images == 2 and stats.failed == 1 and stats.crops == 2


def test_bad_arguments_and_callback_errors_stop_the_run(detector, big_jpegs):
    with pytest.raises(ValueError, match="batch_size"):
        run_detection([], detector, crop_min_conf=0.5, on_result=lambda *a: None, batch_size=0)

    def broken(key, detections, crops):
        raise KeyError("downstream bug")

    with pytest.raises(KeyError, match="downstream bug"):
        run_detection([(0, big_jpegs[0])], detector, crop_min_conf=0.5, on_result=broken)


def test_a_reduced_decode_reaches_the_same_model_input(big_jpegs, detector):
    """Pillow's 1/4 decode and letterbox's box reduction of the full image agree to a fraction of a
    grey level, which is what keeps the engine's detections equal to the straightforward path's."""
    full = np.asarray(Image.open(io.BytesIO(big_jpegs[0])).convert("RGB"))
    reference, box = detector.prepare(full)
    decoded = decode_for_detection(big_jpegs[0], detector)
    assert decoded.reduced
    assert np.abs(decoded.canvas.astype(int) - reference.astype(int)).mean() < 0.6
    assert decoded.box.scale * decoded.box.width == pytest.approx(box.scale * box.width, rel=1e-3)


def test_thumbnails_come_from_the_detector_s_decode_one_per_decoded_item(big_jpegs, detector):
    """The camera background's thumbnails: handed over before each result, from the reduced decode."""
    from gpu_ops.background import thumbnail

    thumbs = {}
    results, on_result = _collect()

    def on_thumbnail(key, grey, infrared):
        assert key not in results and key not in thumbs  # before its result, once
        thumbs[key] = (grey, infrared)

    items = [(i, data) for i, data in enumerate(big_jpegs)] + [("broken", b"not an image")]
    stats = run_detection(items, detector, crop_min_conf=0.3, on_result=on_result, on_thumbnail=on_thumbnail)
    assert stats.reduced_decodes == 2 and stats.failed == 1 and sorted(thumbs) == [0, 1]  # no thumbnail of what did not decode
    for i, data in enumerate(big_jpegs):
        grey, infrared = thumbs[i]
        expected, _ = thumbnail(decode_for_detection(data, detector).image)
        assert grey.shape == (144, 192) and grey.dtype == np.uint8 and not infrared  # colour photographs
        assert np.array_equal(grey, expected)
    assert decode_for_detection(big_jpegs[0], detector).thumbnail is None  # not asked for: none made
