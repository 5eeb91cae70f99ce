"""Repeat-detection elimination on constructed detections: a known static box across triggers and days."""

from __future__ import annotations

import pytest

from gpu_ops.repeat_detections import DetectionRef, RepeatConfig, find_repeats, read_overrides

ROCK = (0.40, 0.60, 0.10, 0.08)


def _camera(n_triggers=6, days=3):
    dets = []
    for t in range(n_triggers):
        day = f"2024-05-{1 + t % days:02d}"
        # The rock, jittered a little as a detector's box is.
        dets.append(DetectionRef(f"rock{t}", "cam-a", f"b{t}", day, 0.4, (ROCK[0] + 0.002 * t, ROCK[1], ROCK[2], ROCK[3])))
        # An animal in a different place each trigger.
        dets.append(DetectionRef(f"deer{t}", "cam-a", f"b{t}", day, 0.6, (0.05 + 0.12 * t, 0.2, 0.1, 0.2)))
    return dets


def test_static_box_is_suppressed_and_reported():
    repeats, suppressed = find_repeats(_camera(), RepeatConfig())
    assert suppressed == {f"rock{t}" for t in range(6)}
    [repeat] = repeats
    assert (repeat.camera_id, repeat.triggers, repeat.days, repeat.suppressed) == ("cam-a", 6, 3, True)
    assert repeat.reason == "same box (IoU >= 0.7) in 6 triggers on 3 days"


def test_one_burst_of_a_standing_animal_is_one_trigger():
    dets = [DetectionRef(f"f{k}", "cam-a", "burst1", "2024-05-01", 0.5, ROCK) for k in range(10)]
    assert find_repeats(dets, RepeatConfig()) == ([], set())


def test_one_night_is_not_enough():
    assert find_repeats(_camera(days=1), RepeatConfig()) == ([], set())


def test_cameras_apart():
    dets = [DetectionRef(f"d{t}", f"cam-{t}", f"b{t}", f"2024-05-0{1 + t}", 0.5, ROCK) for t in range(6)]
    assert find_repeats(dets, RepeatConfig()) == ([], set())


def test_override_keeps_the_place_and_says_so(tmp_path):
    path = tmp_path / "keep.csv"
    path.write_text("camera_id,x,y,w,h\ncam-a,0.40,0.60,0.10,0.08\n")
    repeats, suppressed = find_repeats(_camera(), RepeatConfig(), read_overrides(path))
    assert suppressed == set()
    assert [r.suppressed for r in repeats] == [False]
    assert repeats[0].reason.endswith("; kept by the user's override")


def test_bad_override_file_names_the_line(tmp_path):
    path = tmp_path / "keep.csv"
    path.write_text("camera_id,x,y,w,h\ncam-a,0.4,zero,0.1,0.1\n")
    with pytest.raises(ValueError, match=r"keep.csv line 2: expected columns camera_id, x, y, w, h with numbers"):
        read_overrides(path)
