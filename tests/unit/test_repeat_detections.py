"""Repeat-detection elimination on constructed detections: a known static box across triggers and days."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest

from gpu_ops import schemas
from gpu_ops.repeat_detections import (
    DetectionRef,
    find_repeats,
    read_keep_file,
    references,
    repeats_table,
    without_suppressed,
)
from gpu_ops.settings import RepeatDetectionSettings as RepeatConfig

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


def test_media_without_a_camera_time_add_no_day():
    dets = [DetectionRef(f"d{t}", "cam-a", f"b{t}", None, 0.5, ROCK) for t in range(6)]
    assert find_repeats(dets, RepeatConfig()) == ([], set())


def test_cameras_apart():
    dets = [DetectionRef(f"d{t}", f"cam-{t}", f"b{t}", f"2024-05-0{1 + t}", 0.5, ROCK) for t in range(6)]
    assert find_repeats(dets, RepeatConfig()) == ([], set())


def test_large_boxes_far_apart_in_grid_cells_still_group():
    """A large box's jitter moves its centre across grid cells: the neighbourhood search must reach it."""
    big = (0.1, 0.1, 0.8, 0.8)
    dets = [DetectionRef(f"d{t}", "cam-a", f"b{t}", f"2024-05-0{1 + t % 2}", 0.5 - 0.01 * t,
                         (big[0] + 0.02 * t, big[1], big[2], big[3])) for t in range(5)]
    _, suppressed = find_repeats(dets, RepeatConfig())
    assert suppressed == {f"d{t}" for t in range(5)}


def test_keep_file_keeps_the_place_and_says_so():
    keep = read_keep_file(b"camera_id,bbox_x,bbox_y,bbox_w,bbox_h,reason\ncam-a,0.40,0.60,0.10,0.08,anything\n")
    repeats, suppressed = find_repeats(_camera(), RepeatConfig(), keep)
    assert suppressed == set()
    assert [r.suppressed for r in repeats] == [False]
    assert repeats[0].reason.endswith("; kept by repeat_detections_keep.csv")


def test_bad_keep_file_names_the_line_or_the_columns():
    with pytest.raises(ValueError, match=r"^repeat_detections_keep.csv line 2: bbox_x, bbox_y, bbox_w, bbox_h must be numbers$"):
        read_keep_file(b"camera_id,bbox_x,bbox_y,bbox_w,bbox_h\ncam-a,0.4,zero,0.1,0.1\n")
    with pytest.raises(ValueError, match=r"^repeat_detections_keep.csv: missing column\(s\) bbox_x, bbox_y"):
        read_keep_file(b"camera_id,x,y,w,h\ncam-a,0.4,0.6,0.1,0.1\n")


def test_the_table_round_trip_drops_only_suppressed_detections_of_their_camera():
    when = datetime(2024, 5, 1, 3, 0)
    media = pa.Table.from_pylist([
        {"camera_id": cam, "file_path": f"{t}.jpg", "burst_id": f"{cam}/{t}", "timestamp_source": "exif"}
        for cam in ("cam-a", "cam-b") for t in range(5)
    ], schema=schemas.MEDIA)
    rows = [
        {"camera_id": cam, "detection_id": f"x{t}", "file_path": f"{t}.jpg", "label": "sheep", "conf": 0.5,
         "timestamp": when.replace(day=1 + t % 2) if cam == "cam-a" else when,
         "bbox_x": ROCK[0], "bbox_y": ROCK[1], "bbox_w": ROCK[2], "bbox_h": ROCK[3]}
        for cam in ("cam-a", "cam-b") for t in range(5)
    ]
    detections = pa.Table.from_pylist(rows, schema=schemas.DETECTIONS)
    repeats, _ = find_repeats(references(detections, media), RepeatConfig())
    table = repeats_table(repeats)
    assert table.schema == schemas.REPEAT_DETECTIONS
    assert table.select(["camera_id", "label", "triggers", "days", "suppressed"]).to_pylist() == [
        {"camera_id": "cam-a", "label": "sheep", "triggers": 5, "days": 2, "suppressed": True}]
    left = without_suppressed(detections, table)
    # cam-b's detections share the ids (the same photos) but were all on one day: they stay.
    assert left.column("camera_id").to_pylist() == ["cam-b"] * 5
