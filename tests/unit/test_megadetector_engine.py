"""MegaDetector's YOLOv5 checkpoints batched through the engine, against MegaDetector's own inference.

Random weights in the published file format (tests/megadetector_support.py): the boxes are junk,
but the same junk both ways only if the preprocessing, the model, NMS and the box geometry all agree.
The fast tests use YOLOv5n6 (the same P6 head and stride 64 as MegaDetector v5's YOLOv5x6); the slow
one the real YOLOv5x6 at 1280.
"""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import pytest
from PIL import Image, ImageOps

import ultralytics
from gpu_ops.boxes import iou
from gpu_ops.detector_loader import load_detector
from gpu_ops.detector_megadetector import YOLOv5Detector, checkpoint_format
from gpu_ops.engine import run_detection
from tests.megadetector_support import build_yolov5, reference_detections, save_megadetector_checkpoint

ASSETS = Path(ultralytics.__file__).parent / "assets"
CONF = 0.3


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Three shapes in one batch: portrait, 16:9 and a 12 MP 4:3 frame (three canvas shapes)."""
    folder = tmp_path_factory.mktemp("photos")
    out = []
    for name, size in (("bus.jpg", None), ("zidane.jpg", None), ("bus.jpg", (4000, 3000))):
        image = Image.open(ASSETS / name).convert("RGB")
        if size:
            image = ImageOps.fit(image, size, Image.BICUBIC)
        path = folder / f"{len(out)}-{name}"
        image.save(path, quality=90)
        out.append(path)
    return out


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    model = build_yolov5("yolov5n6.yaml", objectness_boost=0.0, head_scale=0.025)
    return save_megadetector_checkpoint(model, tmp_path_factory.mktemp("md") / "md_v5a.0.0.pt")


def _engine(detector, photos):
    results = {}
    stats = run_detection([(p, str(p)) for p in photos], detector, crop_min_conf=0.3, batch_size=len(photos),
                          on_result=lambda key, found, crops: results.__setitem__(key, (found, crops)))
    assert stats.failed == 0 and stats.batches == 1
    return results, stats


def _assert_matches(found, reference, *, min_boxes: int) -> int:
    """Every box above the threshold (+ the tolerance, so a score right at it may fall either side)
    has a partner of the same class at IoU >= 0.9 and conf within 0.02, both ways. Boxes of no size (under a pixel)
    (clipped to an edge) are left out: Stage 1 drops them."""
    compared = 0
    ours = [(d.label, d.conf, d.bbox) for d in found]
    theirs = [({0: "animal", 1: "person", 2: "vehicle"}[c], conf, box) for c, conf, box in reference]
    for first, second in ((theirs, ours), (ours, theirs)):
        for label, conf, box in first:
            if conf < CONF + 0.02 or min(box[2], box[3]) < 1e-3:
                continue
            partners = [(iou(box, other), other_conf) for other_label, other_conf, other in second if other_label == label]
            best = max(partners, default=(0.0, 0.0))
            assert best[0] >= 0.9 and abs(best[1] - conf) <= 0.02, (label, conf, box, best)
            compared += 1
    assert compared >= min_boxes
    return compared


def test_checkpoint_is_in_the_published_format(small_checkpoint):
    with zipfile.ZipFile(small_checkpoint) as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert b"models.yolo\nDetectionModel" in pickled or b"models.yolo" in pickled
    assert checkpoint_format(small_checkpoint) == "yolov5"


def test_engine_matches_megadetector_inference(small_checkpoint, photos):
    detector = load_detector(f"megadetector:{small_checkpoint}", backend="torch", device="cpu", image_size=640,
                             conf_threshold=CONF)
    assert isinstance(detector, YOLOv5Detector) and detector.stride == 64
    assert detector.categories == {0: "animal", 1: "person", 2: "vehicle"}
    results, stats = _engine(detector, photos)
    assert stats.full_decodes >= 3 and stats.reduced_decodes == 0  # YOLOv5 resizes the full image
    compared = sum(
        _assert_matches(results[p][0], reference_detections(small_checkpoint, p, image_size=640, conf=CONF), min_boxes=5)
        for p in photos
    )
    assert compared >= 40


def test_canvases_are_yolov5s_minimum_rectangles(small_checkpoint):
    detector = load_detector(f"megadetector:{small_checkpoint}", backend="torch", device="cpu", image_size=640,
                             conf_threshold=CONF)
    import numpy as np

    canvas, box = detector.prepare(np.zeros((1080, 1920, 3), dtype=np.uint8))
    assert canvas.shape == (384, 640, 3)  # 360 rows padded to a multiple of 64, not to 640
    assert box.scale == pytest.approx(1 / 3) and box.pad_y == pytest.approx(12.0) and box.pad_x == 0


def test_onnx_backend_matches_torch(small_checkpoint, photos):
    torch_detector = load_detector(f"megadetector:{small_checkpoint}", backend="torch", device="cpu", image_size=640,
                                   conf_threshold=CONF)
    onnx_detector = load_detector(f"megadetector:{small_checkpoint}", backend="onnx", device="cpu", image_size=640,
                                  conf_threshold=CONF)
    assert onnx_detector.backend == "onnx" and onnx_detector.onnx_path().is_file()
    expected, _ = _engine(torch_detector, photos)
    got, _ = _engine(onnx_detector, photos)  # three input shapes through one dynamic-shape export
    compared = 0
    for path in photos:
        reference = [({"animal": 0, "person": 1, "vehicle": 2}[d.label], d.conf, d.bbox) for d in expected[path][0]]
        compared += _assert_matches(got[path][0], reference, min_boxes=0)
    assert compared >= 30


def test_tensorrt_falls_back_to_torch_with_one_line(small_checkpoint, monkeypatch, caplog):
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)  # makes `import tensorrt` fail
    with caplog.at_level(logging.WARNING, logger="gpu_ops"):
        detector = load_detector(f"megadetector:{small_checkpoint}", backend="tensorrt", device="cpu", image_size=640,
                                 conf_threshold=0.3)
    assert detector.backend == "torch"
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "TensorRT backend unavailable" in warning and "falling back to the torch backend" in warning


def test_named_release_runs_from_the_cache_at_its_own_size(small_checkpoint, tmp_path, monkeypatch, caplog):
    """A file put in place by hand for a release without a published digest is pinned on first use."""
    monkeypatch.setenv("ODINS_RAVNE_MODEL_DIR", str(tmp_path))
    target = tmp_path / "megadetector-v5a" / "md_v5a.0.0.pt"
    target.parent.mkdir()
    target.write_bytes(small_checkpoint.read_bytes())
    detector = load_detector("megadetector-v5a", backend="torch", device="cpu", image_size=416, conf_threshold=0.3)
    assert isinstance(detector, YOLOv5Detector) and detector.image_size == 1280 and detector.name == "megadetector-v5a"
    assert (target.parent / "md_v5a.0.0.pt.sha256").is_file()


def test_not_a_checkpoint_is_one_clear_error(tmp_path):
    (tmp_path / "md_v5a.0.0.pt").write_bytes(b"not a real checkpoint")
    with pytest.raises(RuntimeError, match="is not a YOLOv5 or ultralytics checkpoint"):
        load_detector(f"megadetector:{tmp_path / 'md_v5a.0.0.pt'}", device="cpu")


@pytest.mark.slow
def test_megadetector_v5_architecture_at_1280_matches(tmp_path, photos):
    """YOLOv5x6 at 1280, as MegaDetector v5a/v5b and v1000 redwood (about a minute on two cores)."""
    checkpoint = save_megadetector_checkpoint(build_yolov5("yolov5x6.yaml", objectness_boost=0.0, head_scale=0.002),
                                              tmp_path / "md_v5b.0.0.pt")
    detector = load_detector(f"megadetector:{checkpoint}", backend="torch", device="cpu", image_size=1280, conf_threshold=CONF)
    results, _ = _engine(detector, photos[1:])
    for path in photos[1:]:
        _assert_matches(results[path][0], reference_detections(checkpoint, path, image_size=1280, conf=CONF), min_boxes=5)
