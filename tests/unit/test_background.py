"""The camera-level background on constructed frames: the same scene with and without a still animal."""

from __future__ import annotations

import numpy as np

from gpu_ops.background import BackgroundConfig, is_infrared, propose, reduce
from gpu_ops.boxes import iou

ANIMAL = (0.55, 0.40, 0.15, 0.20)  # normalized x, y, w, h


def _scene(seed: int, *, animal: bool = False, gain: float = 1.0, grey: bool = True) -> np.ndarray:
    """A fixed textured scene (the same for every seed), camera noise and exposure per trigger."""
    yy, xx = np.mgrid[0:240, 0:320]
    base = 100 + 40 * np.sin(xx / 17.0) * np.cos(yy / 23.0)
    noisy = base * gain + np.random.default_rng(seed).normal(0, 3, base.shape)
    if animal:
        x, y, w, h = ANIMAL
        noisy[int(y * 240): int((y + h) * 240), int(x * 320): int((x + w) * 320)] += 60
    image = np.clip(noisy, 0, 255).astype(np.uint8)
    rgb = np.stack([image] * 3, axis=2)
    if not grey:
        rgb[..., 0] = np.clip(rgb[..., 0].astype(int) + 40, 0, 255)
    return rgb


def _background(triggers) -> np.ndarray:
    return np.median(np.stack([reduce([f], BackgroundConfig.side) for f in triggers]), axis=0)


def test_an_animal_standing_still_differs_from_the_cameras_other_triggers():
    config = BackgroundConfig()
    others = [_scene(s, gain=g) for s, g in ((1, 0.8), (2, 1.0), (3, 1.3))]  # exposure varies by trigger
    burst = [_scene(10 + k, animal=True) for k in range(3)]  # the animal does not move: no burst motion
    [proposal] = propose(reduce(burst, config.side), _background(others), config)
    assert iou(proposal.bbox, ANIMAL) > 0.7


def test_the_empty_scene_proposes_nothing():
    config = BackgroundConfig()
    others = [_scene(s) for s in (1, 2, 3)]
    assert propose(reduce([_scene(20, gain=1.2)], config.side), _background(others), config) == []


def test_infrared_is_told_from_colour():
    assert is_infrared(_scene(1)) and not is_infrared(_scene(1, grey=False))
