"""The infrared second look (gpu_ops.second_look) with the real default model: a flat grey frame the
first look finds nothing on, frames it must leave alone, the engine's crops, Stage 1's signature and
the profile setting."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ultralytics

from gpu_ops import second_look
from gpu_ops.detector_loader import load_detector
from gpu_ops.engine import run_detection
from gpu_ops.settings import ProfileError, parse_profile
from gpu_ops.stage1 import stage1_signature

PEOPLE = Path(ultralytics.__file__).parent / "assets" / "zidane.jpg"  # two people, 1280 x 720 (letterboxed at 416)


@pytest.fixture(scope="module")
def detector():
    return load_detector("default", image_size=416, conf_threshold=0.1)


def _flat_infrared(low: int = 105, high: int = 115) -> np.ndarray:
    """The photo as a night frame would hold it: grey, its whole range squeezed into ``low..high``."""
    grey = np.asarray(Image.open(PEOPLE).convert("L")).astype(np.float64)
    flat = (low + (high - low) * grey / 255).astype(np.uint8)
    return np.repeat(flat[..., None], 3, axis=2)


def test_a_flat_infrared_frame_is_looked_at_again_and_its_people_found(detector):
    frame = _flat_infrared()
    assert not [d for d in detector.detect([frame])[0] if d.conf >= second_look.BELOW]  # the first look: nothing
    (found,), looked = second_look.detect(detector, [frame], second_look.BELOW)
    assert looked == 1
    people = [d for d in found if d.category == "person" and d.conf >= second_look.BELOW]
    assert len(people) >= 1 and all(d.source == second_look.SOURCE for d in people)
    # The box lies on a person of the photo (Zidane, right of centre; the other man left of him).
    assert any(0.4 < d.bbox[0] + d.bbox[2] / 2 < 0.9 and d.bbox[3] > 0.4 for d in people)


def test_colour_frames_and_frames_with_a_box_are_not_looked_at_again(detector):
    colour = np.asarray(Image.open(PEOPLE).convert("RGB"))
    first = detector.detect([colour])[0]
    found, looked = second_look.detect(detector, [colour], second_look.BELOW)
    assert looked == 0 and [d.bbox for d in found[0]] == [d.bbox for d in first]
    # A grey frame with its contrast (the first look boxes the people): looked at once only.
    grey = _flat_infrared(0, 255)
    assert any(d.conf >= second_look.BELOW for d in detector.detect([grey])[0])
    assert second_look.detect(detector, [grey], second_look.BELOW)[1] == 0
    # A daylight frame that came back empty is not looked at again either: infrared only.
    blank = np.zeros((300, 400, 3), np.uint8)
    blank[..., 1] = 120
    assert second_look.detect(detector, [blank], second_look.BELOW)[1] == 0


def test_a_second_look_box_covered_by_a_first_look_box_is_not_added_twice():
    from gpu_ops.detector import Detection

    first = [Detection("animal", "dog", 0.2, (0.1, 0.1, 0.3, 0.3))]
    second = [Detection("animal", "cat", 0.5, (0.11, 0.1, 0.3, 0.3)), Detection("animal", "dog", 0.6, (0.6, 0.5, 0.2, 0.2)),
              Detection("person", "person", 0.4, (0.1, 0.1, 0.3, 0.3))]
    out = second_look.merged(first, second)
    assert [(d.label, d.source if hasattr(d, "source") else "detector") for d in out] == [
        ("dog", "detector"), ("dog", "contrast"), ("person", "contrast")]


def test_the_engine_crops_what_the_second_look_found_and_counts_it(detector):
    buffer = io.BytesIO()
    Image.fromarray(_flat_infrared()).save(buffer, "JPEG", quality=95)
    results = {}
    stats = run_detection([("flat", buffer.getvalue())], detector, crop_min_conf=0.2,
                          on_result=lambda key, dets, crops: results.__setitem__(key, (dets, crops)),
                          second_look_conf=second_look.BELOW)
    dets, crops = results["flat"]
    assert stats.second_looks == 1 and stats.second_look_seconds > 0
    found = [i for i, d in enumerate(dets) if d.source == second_look.SOURCE and d.conf >= 0.2]
    assert found and all(i in crops and Image.open(io.BytesIO(crops[i])).size[1] > 100 for i in found)
    # Without it, one look: the same frame comes back empty.
    one = run_detection([("flat", buffer.getvalue())], detector, crop_min_conf=0.2,
                        on_result=lambda key, dets, crops: results.__setitem__(key, (dets, crops)))
    assert one.second_looks == 0 and not [d for d in results["flat"][0] if d.conf >= second_look.BELOW]


class _FailsOnSecondCall:
    """A stand-in wrapping the real detector (not a model of its own): the second look's inference raises."""

    def __init__(self, real):
        self.real, self.calls = real, 0

    def __getattr__(self, name):
        return getattr(self.real, name)

    def detect_prepared(self, canvases, boxes):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("device lost")
        return self.real.detect_prepared(canvases, boxes)


def test_a_failing_second_look_keeps_the_first_look(detector, caplog):
    buffer = io.BytesIO()
    Image.fromarray(_flat_infrared()).save(buffer, "JPEG", quality=95)
    results = {}
    with caplog.at_level(logging.WARNING, logger="gpu_ops"):
        run_detection([("flat", buffer.getvalue())], _FailsOnSecondCall(detector), crop_min_conf=0.2,
                      on_result=lambda key, dets, crops: results.__setitem__(key, (dets, crops)), second_look_conf=0.3)
    assert "flat" in results and not isinstance(results["flat"][1], BaseException)
    assert any("second look failed" in r.message and "keeping the first look" in r.message for r in caplog.records)


def test_the_setting_decides_where_it_runs_and_is_in_stage1_s_signature():
    def profile(model, setting=None):
        stage1 = {"model": model} | ({"infrared_second_look": setting} if setting else {})
        return parse_profile({"pipeline": {"stage1": stage1}})

    assert [second_look.applies(s, m) for s, m in (("auto", "default"), ("auto", "default-camtrap"), ("auto", "default-camtrap-neck"),
                                                   ("always", "default"), ("never", "default-camtrap"))] == [False, True, False, True, False]
    signatures = {stage1_signature(profile(m, s))[0] for m, s in (("default", None), ("default", "never"))}
    assert len(signatures) == 1  # auto with the COCO default is no second look: work done stays done
    _, parts = stage1_signature(profile("default", "always"))
    assert parts["infrared_second_look"] == {"clip": second_look.CLIP, "grid": second_look.GRID, "below": second_look.BELOW}
    assert "infrared_second_look" in stage1_signature(profile("default-camtrap"))[1]
    with pytest.raises(ProfileError, match=r"'pipeline.stage1.infrared_second_look' is 'yes'; use one of auto, always, never"):
        profile("default", "yes")
