"""Motion proposals on constructed infrared-like bursts whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from bench.burst_scenes import make_burst
from gpu_ops.boxes import iou
from gpu_ops.motion import MotionConfig, find_info_bars, propose

SIZE = (240, 320)  # small, so fast; just above the working width, so noise is barely averaged away
SEEDS = (0, 1, 2)


def _score(kind: str, seeds=SEEDS, **kwargs) -> tuple[int, int, int]:
    """(true positives, false positives, missed subjects) at IoU 0.3 over a few bursts."""
    tp = fp = fn = 0
    for seed in seeds:
        burst = make_burst(kind, seed, size=SIZE, **kwargs)
        result = propose(burst.frames)
        for proposals, truth in zip(result.proposals, burst.truth):
            matched: set[int] = set()
            for p in proposals:
                hit = [j for j, box in enumerate(truth) if j not in matched and iou(p.bbox, box) >= 0.3]
                if hit:
                    matched.add(hit[0])
                    tp += 1
                else:
                    fp += 1
            fn += len(truth) - len(matched)
    return tp, fp, fn


def test_moving_subject_over_a_static_noisy_ir_scene_is_outlined_in_every_frame():
    tp, fp, fn = _score("moving")
    # 15 frames; a subject entering the frame may be mostly outside it in the first one.
    assert tp >= 14 and fp == 0


def test_boxes_are_tight_and_normalized():
    burst = make_burst("moving", 3, size=SIZE)
    result = propose(burst.frames)
    overlaps = []
    for proposals, truth in zip(result.proposals, burst.truth):
        assert len(proposals) == 1
        x, y, w, h = proposals[0].bbox
        assert 0 <= x and 0 <= y and x + w <= 1 and y + h <= 1
        assert 0 < proposals[0].score <= 1
        overlaps.append(iou(proposals[0].bbox, truth[0]))
    # Thin legs may vanish at the working resolution; the body never does.
    assert min(overlaps) >= 0.4 and float(np.mean(overlaps)) >= 0.6


def test_camera_shake_is_aligned_away():
    tp, fp, fn = _score("shake")
    assert tp >= 14 and fp <= 1
    result = propose(make_burst("shake", 0, size=SIZE).frames)
    assert any(max(abs(dy), abs(dx)) >= 1 for dy, dx in result.shifts)


def test_exposure_change_between_frames_is_normalized():
    tp, fp, fn = _score("exposure")
    assert tp >= 12 and fp <= 2
    result = propose(make_burst("exposure", 0, size=SIZE).frames)
    assert max(a for a, _ in result.gains) / min(a for a, _ in result.gains) > 1.2


def test_waving_vegetation_beside_a_subject_does_not_flood_the_frames():
    tp, fp, fn = _score("vegetation")
    assert tp >= 10 and fp <= 3


def test_a_subject_that_does_not_move_gives_no_proposal():
    assert _score("still") == (0, 0, 15)


def test_a_light_change_over_an_empty_scene_gives_no_proposal():
    assert _score("empty_light") == (0, 0, 0)


def test_wind_flags_at_most_an_odd_frame_of_an_empty_burst():
    # A branch that swings in just one frame of the burst looks, pixel by pixel, like an animal
    # passing; motion alone may flag that frame. Fusion drops it: it forms no track and no crop
    # verifies it (test_fusion.test_empty_bursts_stay_empty).
    flagged = 0
    for seed in SEEDS:
        result = propose(make_burst("empty_wind", seed, size=SIZE).frames)
        flagged += sum(1 for proposals in result.proposals if proposals)
    assert flagged <= 3  # of 15 frames


def test_info_bars_are_found_and_masked():
    burst = make_burst("moving", 0, size=SIZE)
    result = propose(burst.frames)
    top, bottom = result.bars
    work_height = result.work_shape[0]
    bar = max(6, SIZE[0] // 22) * work_height / SIZE[0]  # what the generator prints, in working rows
    assert bar <= top <= bar + 2 and bar <= bottom <= bar + 2
    # The bars' text changes every frame, yet no proposal touches them.
    for proposals in result.proposals:
        for p in proposals:
            assert p.bbox[1] * work_height >= top and (p.bbox[1] + p.bbox[3]) * work_height <= work_height - bottom


def test_no_bars_on_a_textured_scene():
    rng = np.random.default_rng(0)
    textured = rng.normal(100, 20, size=(120, 160)).astype(np.float32)
    assert find_info_bars(textured, max_fraction=0.15, uniform=0.55) == (0, 0)


def test_two_frames_are_not_enough_for_a_median():
    burst = make_burst("moving", 0, size=SIZE)
    result = propose(burst.frames[:2])
    assert result.proposals == [[], []] and all(result.skipped)


def test_frames_of_other_sizes_and_grayscale_are_accepted():
    burst = make_burst("moving", 0, size=(480, 640))
    gray = [f[..., 0] for f in burst.frames]
    result = propose(gray, MotionConfig(work_width=200))
    assert sum(len(p) for p in result.proposals) == 5
    assert result.work_shape == (150, 200)


def test_config_rejects_unknown_and_mistyped_keys():
    assert MotionConfig.from_mapping({"work_width": 256}).work_width == 256
    with pytest.raises(ValueError, match="unknown key"):
        MotionConfig.from_mapping({"work_widht": 256})
    with pytest.raises(ValueError, match="must be a number"):
        MotionConfig.from_mapping({"threshold_k": "high"})
    with pytest.raises(ValueError, match="whole number"):
        MotionConfig.from_mapping({"work_width": 320.5})
