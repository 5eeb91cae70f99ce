"""MegaDetector checkpoints batched through the engine: YOLOv5 ones against MegaDetector's own
inference, ultralytics ones' ONNX export against their torch inference.

Random weights in the published file format (bench.random_checkpoints): the boxes are junk,
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
from bench.random_checkpoints import (
    MD_NAMES,
    build_ultralytics,
    build_yolov5,
    save_megadetector_checkpoint,
    save_ultralytics_checkpoint,
)
from gpu_ops.detector_loader import load_detector
from gpu_ops.detector_megadetector import YOLOv5Detector, checkpoint_format
from gpu_ops.detector_ultralytics import UltralyticsDetector
from gpu_ops.engine import run_detection
from gpu_ops.fileio import sha256_file
from tests.megadetector_support import assert_boxes_match, reference_detections

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


def _as_reference(found) -> list[tuple[int, float, tuple[float, float, float, float]]]:
    """One backend's detections in ``reference_detections``' form, to compare another with."""
    ids = {name: i for i, name in MD_NAMES.items()}
    return [(ids[d.label], d.conf, d.bbox) for d in found]


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
        assert_boxes_match(results[p][0], reference_detections(small_checkpoint, p, image_size=640, conf=CONF), min_boxes=5,
                           conf=CONF)
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
        compared += assert_boxes_match(got[path][0], _as_reference(expected[path][0]), min_boxes=0, conf=CONF)
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


# --- ultralytics-format MegaDetector (v1000 larch/sorrel, v6): ultralytics' exports -----------

UL_CONF = 0.2  # the random head below scores boxes around 0.2-0.35


@pytest.mark.parametrize("cfg, filename", [("yolo11n.yaml", "md_v1000.0.0-sorrel.pt"), ("yolov10n.yaml", "MDV6-yolov10-c.pt")])
def test_ultralytics_onnx_export_matches_torch(cfg, filename, photos, tmp_path):
    """YOLO11 (v1000 larch/sorrel) and YOLOv10's NMS-free head (MDv6-yolov10)."""
    ultralytics_checkpoint = save_ultralytics_checkpoint(build_ultralytics(cfg, class_bias=-1.5), tmp_path / filename)
    folder = ultralytics_checkpoint.parent
    torch_detector = load_detector(f"megadetector:{ultralytics_checkpoint}", backend="torch", device="cpu",
                                   image_size=640, conf_threshold=UL_CONF)
    onnx_detector = load_detector(f"megadetector:{ultralytics_checkpoint}", backend="onnx", device="cpu",
                                  image_size=640, conf_threshold=UL_CONF)
    assert isinstance(onnx_detector, UltralyticsDetector)
    assert (torch_detector.backend, onnx_detector.backend) == ("ultralytics-pt", "ultralytics-onnx")
    assert onnx_detector.categories == torch_detector.categories == {0: "animal", 1: "person", 2: "vehicle"}
    # Exported once, next to the checkpoint, under a name carrying its digest; no staging left behind.
    export = folder / f"{ultralytics_checkpoint.stem}-{sha256_file(ultralytics_checkpoint)[:12]}-640-export1.onnx"
    assert sorted(p.name for p in folder.iterdir() if p.name != ".lock") == sorted([ultralytics_checkpoint.name, export.name])
    expected, _ = _engine(torch_detector, photos)
    got, _ = _engine(onnx_detector, photos)  # one dynamic-batch export for the whole batch
    compared = sum(assert_boxes_match(got[p][0], _as_reference(expected[p][0]), min_boxes=5, conf=UL_CONF) for p in photos)
    assert compared >= 30
    written = export.stat().st_mtime_ns
    again = load_detector(f"megadetector:{ultralytics_checkpoint}", backend="onnx", device="cpu", image_size=640,
                          conf_threshold=UL_CONF + 0.05)
    assert again is not onnx_detector and again.backend == "ultralytics-onnx" and export.stat().st_mtime_ns == written


def test_ultralytics_tensorrt_falls_back_to_torch_with_one_line(tmp_path, monkeypatch, caplog):
    """A random YOLO11n (sorrel is YOLO11s, larch YOLO11l: the same head) in the v1000 file format."""
    ultralytics_checkpoint = save_ultralytics_checkpoint(build_ultralytics("yolo11n.yaml"), tmp_path / "md_v1000.0.0-larch.pt")
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)
    with caplog.at_level(logging.WARNING, logger="gpu_ops"):
        detector = load_detector(f"megadetector:{ultralytics_checkpoint}", backend="tensorrt", device="cpu",
                                 image_size=640, conf_threshold=0.3)
    assert detector.backend == "ultralytics-pt"
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "TensorRT backend unavailable" in warning and "falling back to the torch backend" in warning


@pytest.mark.slow
def test_megadetector_v5_architecture_at_1280_matches(tmp_path, photos):
    """YOLOv5x6 at 1280, as MegaDetector v5a/v5b and v1000 redwood (about a minute on two cores)."""
    checkpoint = save_megadetector_checkpoint(build_yolov5("yolov5x6.yaml", objectness_boost=0.0, head_scale=0.002),
                                              tmp_path / "md_v5b.0.0.pt")
    detector = load_detector(f"megadetector:{checkpoint}", backend="torch", device="cpu", image_size=1280, conf_threshold=CONF)
    results, _ = _engine(detector, photos[1:])
    for path in photos[1:]:
        reference = reference_detections(checkpoint, path, image_size=1280, conf=CONF)
        assert_boxes_match(results[path][0], reference, min_boxes=5, conf=CONF)
