"""The evaluation command: Camtrap DP truth in, recall and precision per method out."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest
from PIL import Image

from bench.burst_scenes import exif_bytes, make_burst
from bench.evaluate import Tally, evaluate, format_report, read_truth
from gpu_ops.fusion import BurstConfig


class BlindDetector:
    name = "blind"

    def detect(self, images):
        return [[] for _ in images]


def _write(root, kinds=("moving", "empty_light")):
    """Two bursts in two camera folders, plus observations.csv naming media by mediaID only."""
    rows = []
    for b, kind in enumerate(kinds):
        start = datetime(2024, 5, 1, 3, 0, 0) + timedelta(hours=b)
        burst = make_burst(kind, b, size=(240, 320), n_frames=4, start=start)
        camera = root / f"cam-{b}"
        camera.mkdir(parents=True)
        for k, (frame, boxes) in enumerate(zip(burst.frames, burst.truth)):
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, "JPEG", quality=92, exif=exif_bytes(start + timedelta(seconds=k)))
            name = f"B{b}_{k}.JPG"
            (camera / name).write_bytes(buffer.getvalue())
            for x, y, w, h in boxes or [("", "", "", "")]:
                rows.append({"observationID": f"{name}#{len(rows)}", "mediaID": name, "bboxX": x, "bboxY": y,
                             "bboxWidth": w, "bboxHeight": h})
    truth = root / "observations.csv"
    with open(truth, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return truth


def test_tally_matches_once_per_true_box_at_each_iou():
    tally = Tally()
    truth = [(0.1, 0.1, 0.2, 0.2)]
    tally.add([(0.9, (0.1, 0.1, 0.2, 0.2)), (0.8, (0.12, 0.12, 0.2, 0.2)), (0.7, (0.6, 0.6, 0.1, 0.1))], truth)
    tally.add([(0.5, (0.5, 0.5, 0.1, 0.1))], [])
    summary = tally.summary()
    assert summary["iou0.3"] == {"tp": 1, "fp": 3, "fn": 0, "recall": 1.0, "precision": 0.25}
    assert summary["boxes_on_empty_images"] == 1


def test_truth_is_read_by_media_id_and_blank_rows_mark_empty_media(tmp_path):
    truth = read_truth(_write(tmp_path), tmp_path)
    assert sorted(truth) == [f"cam-{b}/B{b}_{k}.JPG" for b in (0, 1) for k in range(4)]
    assert all(len(truth[f"cam-0/B0_{k}.JPG"]) == 1 for k in range(4))
    assert all(truth[f"cam-1/B1_{k}.JPG"] == [] for k in range(4))


def test_truth_errors_say_what_is_missing(tmp_path):
    bad = tmp_path / "obs.csv"
    bad.write_text("observationID,bboxX\nx,0.1\n")
    with pytest.raises(ValueError, match="names no media"):
        read_truth(bad, tmp_path)
    bad.write_text("mediaID,bboxX,bboxY,bboxWidth,bboxHeight\nnowhere.jpg,0.1,0.1,0.1,0.1\n")
    with pytest.raises(ValueError, match="not a file under"):
        read_truth(bad, tmp_path)


def test_evaluate_reports_detector_motion_and_fused(tmp_path):
    truth = _write(tmp_path)
    report = evaluate(truth, tmp_path, detector=BlindDetector(), config=BurstConfig(), min_confidence=0.3)
    assert (report["images"], report["bursts"], report["true_boxes"]) == (8, 2, 4)
    results = report["results"]
    assert results["detector"]["iou0.3"]["recall"] == 0.0
    assert results["motion"]["iou0.3"]["tp"] >= 3
    assert results["fused"]["iou0.3"]["tp"] >= 3
    assert results["fused"]["boxes_on_empty_images"] == 0
    text = format_report(report)
    assert "fused" in text and "recall" in text and "ms" in text
