"""Fusing detector boxes with motion proposals per burst, with stand-in detectors of known behaviour."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy import ndimage

from bench.burst_scenes import make_burst
from gpu_ops.boxes import iou
from gpu_ops.fusion import BurstConfig, FusedDetection, _consistent, detect_burst, fuse_burst, link_tracks
from gpu_ops.motion import Proposal

SIZE = (240, 320)


@dataclass(frozen=True)
class Det:  # the fields of gpu_ops.detector.Detection
    category: str
    label: str
    conf: float
    bbox: tuple[float, float, float, float]


class BlindDetector:
    """Finds nothing, ever: only temporal consistency can keep a motion box."""

    def __init__(self):
        self.calls = 0

    def detect(self, images):
        self.calls += len(images)
        return [[] for _ in images]


class NearSightedDetector:
    """Sees a subject only when it fills a good part of the image, like a small daylight model
    that misses small infrared animals but finds them in an enlarged crop."""

    def __init__(self, min_fraction: float = 0.03):
        self.min_fraction = min_fraction
        self.calls = 0

    def detect(self, images):
        self.calls += len(images)
        out = []
        for image in images:
            gray = ndimage.gaussian_filter(image[..., 0].astype(np.float32), 1.5)
            odd = np.abs(gray - np.median(gray)) > 18
            labels, count = ndimage.label(odd)
            dets = []
            h, w = gray.shape
            for sl in ndimage.find_objects(labels):
                bh, bw = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
                if bh * bw >= self.min_fraction * h * w and 0.8 <= bw / bh <= 4:
                    dets.append(Det("animal", "dog", 0.55, (sl[1].start / w, sl[0].start / h, bw / w, bh / h)))
            out.append(dets)
        return out


def _plain_burst(seed: int = 0, n: int = 5):
    """A flat, noisy scene (no trunks for the stand-in detector to mistake) and a small bright
    subject walking across it; returns frames and the true boxes."""
    rng = np.random.default_rng(seed)
    h, w = SIZE
    frames, truth = [], []
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(n):
        img = np.full(SIZE, 80.0) + rng.normal(0, 4, SIZE)
        cx, cy = 40 + k * 55, 150
        body = ((xx - cx) / 12) ** 2 + ((yy - cy) / 7) ** 2 <= 1
        img[body] += 45
        frames.append(np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2))
        truth.append(((cx - 12) / w, (cy - 7) / h, 25 / w, 15 / h))
    return frames, truth


def test_a_small_subject_the_detector_misses_is_verified_on_its_crop():
    frames, truth = _plain_burst()
    detector = NearSightedDetector()
    assert detector.detect(frames) == [[] for _ in frames]  # too small for it in the full frame
    result = fuse_burst(frames, [[] for _ in frames], detector, config=BurstConfig())
    for dets, box in zip(result.detections, truth):
        assert len(dets) == 1
        det = dets[0]
        assert (det.category, det.label, det.source) == ("animal", "dog", "motion")
        assert iou(det.bbox, box) >= 0.5
        # Verified and consistent: the crop's score and the track prior, combined.
        assert det.conf == pytest.approx(1 - (1 - 0.55) * (1 - BurstConfig().track_conf), abs=1e-3)
    # One crop per track: the cost stays bounded whatever the burst length.
    assert result.verified_crops == 1 == detector.calls - len(frames)


def test_detector_boxes_on_a_walking_track_gain_the_motion_source_and_its_evidence():
    frames, truth = _plain_burst()
    detections = [[Det("animal", "cat", 0.14, box)] for box in truth]
    fused = detect_burst(frames, detections, BlindDetector(), config=BurstConfig())
    raised = round(1 - (1 - 0.14) * (1 - BurstConfig().track_conf), 4)
    for dets, box in zip(fused, truth):
        assert dets == [FusedDetection("animal", "cat", raised, box, "detector+motion")]


def test_a_subject_detected_in_one_frame_is_named_in_every_frame_without_crops():
    frames, truth = _plain_burst()
    detections = [[] for _ in frames]
    detections[2] = [Det("animal", "bird", 0.6, truth[2])]
    detector = BlindDetector()
    result = fuse_burst(frames, detections, detector, config=BurstConfig())
    assert detector.calls == 0  # the detection verifies the whole track
    expected = round(1 - (1 - 0.6) * (1 - BurstConfig().track_conf), 4)
    for t, (dets, box) in enumerate(zip(result.detections, truth)):
        assert len(dets) == 1 and iou(dets[0].bbox, box) >= 0.5
        assert (dets[0].label, dets[0].source) == (("bird", "detector+motion") if t == 2 else ("bird", "motion"))
        assert dets[0].conf == expected  # the detection and the walking track, combined


def test_consistency_alone_keeps_a_walking_subject_at_the_track_prior():
    burst = make_burst("moving", 1, size=SIZE)
    config = BurstConfig()
    fused = detect_burst(burst.frames, [[] for _ in burst.frames], BlindDetector(), config=config)
    hits = 0
    for dets, truth in zip(fused, burst.truth):
        for det in dets:
            assert (det.category, det.label, det.source, det.conf) == ("animal", "motion", "motion", config.track_conf)
            hits += any(iou(det.bbox, box) >= 0.3 for box in truth)
    assert hits >= 4


@pytest.mark.parametrize("kind", ["empty_wind", "empty_light"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_empty_bursts_stay_empty(kind, seed):
    burst = make_burst(kind, seed, size=SIZE)
    fused = detect_burst(burst.frames, [[] for _ in burst.frames], BlindDetector(), config=BurstConfig())
    assert fused == [[] for _ in burst.frames]


def test_a_still_subject_keeps_just_the_detector_box():
    burst = make_burst("still", 0, size=SIZE)
    detections = [[Det("animal", "deer", 0.7, truth[0])] for truth in burst.truth]
    fused = detect_burst(burst.frames, detections, BlindDetector(), config=BurstConfig())
    assert all([d.source for d in dets] == ["detector"] for dets in fused)


def test_switched_off_or_short_bursts_return_the_detector_alone():
    frames, truth = _plain_burst()
    detections = [[Det("animal", "cat", 0.3, box)] for box in truth]
    off = detect_burst(frames, detections, BlindDetector(), config=BurstConfig.from_mapping({"enabled": False}))
    short = detect_burst(frames[:2], detections[:2], BlindDetector(), config=BurstConfig())
    assert all(d.source == "detector" for dets in off + short for d in dets)
    assert [len(d) for d in off] == [1] * 5


def test_one_detection_list_per_frame_is_required():
    frames, _ = _plain_burst()
    with pytest.raises(ValueError, match="one list per frame"):
        detect_burst(frames, [[]], BlindDetector(), config=BurstConfig())


def test_a_branch_waving_in_place_is_not_a_consistent_track():
    def prop(frame, x):
        return Proposal(frame=frame, bbox=(x, 0.4, 0.1, 0.1), score=0.6, area=0.005, fill=0.5)

    swaying = [[prop(t, 0.30 + 0.01 * (t % 2))] for t in range(5)]
    walking = [[prop(t, 0.10 + 0.15 * t)] for t in range(5)]
    config = BurstConfig()
    assert [len(t) for t in link_tracks(swaying)] == [5]
    assert not _consistent(link_tracks(swaying)[0], config)
    assert _consistent(link_tracks(walking)[0], config)


def test_profile_section_is_validated():
    config = BurstConfig.from_mapping({"min_frames": 4, "motion": {"work_width": 256}})
    assert (config.min_frames, config.motion.work_width) == (4, 256)
    with pytest.raises(ValueError, match="unknown key.*'bursts'"):
        BurstConfig.from_mapping({"min_frame": 4})
    with pytest.raises(ValueError, match="bursts.motion"):
        BurstConfig.from_mapping({"motion": {"nope": 1}})
    with pytest.raises(ValueError, match="true or false"):
        BurstConfig.from_mapping({"enabled": "no"})
