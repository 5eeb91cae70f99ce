"""The head fine-tune of the default detector (gpu_ops.finetune) on constructed frames: a shape the
COCO heads do not see as an animal, on a noisy night-grey scene, and the same scene empty."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gpu_ops.boxes import iou
from gpu_ops.detector_darknet import DarknetDetector
from gpu_ops.finetune import FineTuneConfig, Sample, apply_heads, fine_tune_heads, heads_state, load_heads, save_heads
from gpu_ops.weights import fetch_default_weights

ANIMAL = (0.30, 0.45, 0.25, 0.18)  # normalized x, y, w, h


def _detector() -> DarknetDetector:
    return DarknetDetector(fetch_default_weights(), backend="torch", device="cpu", image_size=416,
                           conf_threshold=0.05, iou_threshold=0.45, animal_score="sum")


def _frame(seed: int, animal: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scene = 70 + 25 * np.sin(np.mgrid[0:312, 0:416][1] / 9.0) + rng.normal(0, 6, (312, 416))
    if animal:
        yy, xx = np.mgrid[0:312, 0:416]
        x, y, w, h = ANIMAL
        cx, cy = (x + w / 2) * 416, (y + h / 2) * 312
        body = ((xx - cx) / (w * 208)) ** 2 + ((yy - cy) / (h * 156)) ** 2 <= 1
        scene[body] = 190 + rng.normal(0, 6, int(body.sum()))
    grey = np.clip(scene, 0, 255).astype(np.uint8)
    return np.stack([grey] * 3, axis=2)


def _score(detector, image) -> float:
    return max((d.conf for d in detector.detect([image])[0] if d.category == "animal" and iou(d.bbox, ANIMAL) >= 0.5), default=0.0)


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    return [Sample(_frame(s, True), (ANIMAL,), ("animal",)) for s in (1, 2)] + [Sample(_frame(3, False))]


def test_fine_tuning_the_heads_teaches_a_new_animal_and_keeps_the_empty_scene_empty(samples):
    detector = _detector()
    unseen, empty = _frame(10, True), _frame(11, False)  # frames it was not trained on
    assert _score(detector, unseen) < 0.3
    losses = []
    fine_tune_heads(detector, samples, FineTuneConfig(epochs=30, lr=2e-3, l2=0.01), progress=lambda e, loss: losses.append(loss))
    assert losses[-1] < losses[0] / 2
    assert _score(detector, unseen) >= 0.3
    assert not [d for d in detector.detect([empty])[0] if d.conf >= 0.3]
    # Only the two head convolutions changed: the COCO features are frozen.
    coco = _detector()
    changed = [name for (name, a), (_, b) in zip(detector.model.state_dict().items(), coco.model.state_dict().items())
               if not torch.equal(a, b)]
    assert len(changed) == 4 and all(name.endswith(("conv.weight", "conv.bias")) for name in changed)


def test_a_fine_tune_is_seeded_and_its_heads_round_trip_through_a_file(samples, tmp_path):
    config = FineTuneConfig(epochs=2)
    first = fine_tune_heads(_detector(), samples, config)
    second = fine_tune_heads(_detector(), samples, config)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    other = _detector()
    path = save_heads(first, tmp_path / "heads.bin")
    apply_heads(other, load_heads(path, other))
    assert all(torch.equal(heads_state(other)[k], first[k]) for k in first)
    assert save_heads(second, tmp_path / "again.bin").read_bytes() == path.read_bytes()  # same weights, same bytes
    with pytest.raises(ValueError, match="not made for this model"):
        apply_heads(other, {k: v[:1] for k, v in first.items()})
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ValueError, match="neither this model's heads .* not made for this model"):
        load_heads(path, other)


def test_a_neck_fine_tune_trains_every_layer_from_its_start_and_round_trips(samples, tmp_path):
    """train_from: the layers from there on train (their convolutions, batch norm folded in), those before stay."""
    detector = _detector()
    before = {k: v.clone() for k, v in detector.model.state_dict().items()}
    state = fine_tune_heads(detector, samples, FineTuneConfig(epochs=1, train_from=13))
    assert sorted({int(k.split(".")[0]) for k in state}) == [13, 14, 15, 18, 21, 22]
    after = detector.model.state_dict()
    changed = {k.split(".")[1] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"13", "14", "15", "18", "21", "22"}
    other = _detector()
    apply_heads(other, load_heads(save_heads(state, tmp_path / "neck.bin"), other))
    frame = samples[0].image
    assert [d.bbox for d in other.detect([frame])[0]] == [d.bbox for d in detector.detect([frame])[0]]


@pytest.mark.parametrize("model, name", [("default-camtrap", "yolov3-tiny-camtrap"), ("default-camtrap-neck", "yolov3-tiny-camtrap-neck")])
def test_the_shipped_camtrap_models_load_by_name_on_both_cpu_backends(monkeypatch, tmp_path, model, name):
    from gpu_ops import weights
    from gpu_ops.detector_loader import load_detector
    from gpu_ops.settings import parse_profile

    assert parse_profile({"pipeline": {"stage1": {"model": model}}}).pipeline.stage1.model == model

    coco = load_detector("default", backend="torch", image_size=416)
    torch_one = load_detector(model, backend="torch", image_size=416)
    onnx_one = load_detector(model, backend="onnx", image_size=416)
    assert torch_one.name == name and torch_one.signature != coco.signature
    assert "-heads-" in onnx_one.onnx_path().name  # its own export, never the COCO one
    state = load_heads(weights.fine_tuned_file(model), torch_one)
    current = heads_state(torch_one) | heads_state(torch_one, 13)
    assert all(torch.equal(current[k], v) for k, v in state.items())
    image = _frame(10, True)
    a, b = torch_one.detect([image])[0], onnx_one.detect([image])[0]
    assert [d.label for d in a] == [d.label for d in b]
    assert all(abs(x.conf - y.conf) < 1e-3 for x, y in zip(a, b))
    # A changed file is refused with what to do, not loaded.
    changed = tmp_path / "heads.bin"
    shipped = weights.FINE_TUNED[model]
    changed.write_bytes(shipped.file.read_bytes()[:-4] + b"\0\0\0\0")
    monkeypatch.setitem(weights.FINE_TUNED, model, dataclasses.replace(shipped, file=changed))
    with pytest.raises(RuntimeError, match="not the pinned"):
        weights.fine_tuned_file(model)
