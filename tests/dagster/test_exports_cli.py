"""The analysts' exports from the command line, and results computed elsewhere joining at Stage 2."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from dagster import DagsterInstance

from odins_ravne_assets.cli import main


def test_camtrap_dp_export_of_the_sample_validates(processed, tmp_path, capsys):
    _, output = processed
    dest = tmp_path / "package"
    assert main(["export", "camtrap-dp", str(dest), "--out", str(output)]) == 0
    assert "valid Camtrap DP 1.0" in capsys.readouterr().out
    assert {p.name for p in dest.iterdir()} >= {"datapackage.json", "deployments.csv", "media.csv", "observations.csv"}


def test_megadetector_json_round_trip_joins_at_stage_2_without_detecting_again(processed, tmp_path, capsys):
    cards, output = processed
    md = tmp_path / "cam-north-01.json"
    assert main(["export", "megadetector", str(md), "--out", str(output), "--camera", "cam-north-01"]) == 0
    doc = json.loads(md.read_text())
    assert doc["info"]["format_version"] == "1.6" and doc["images"]

    fresh = tmp_path / "fresh"
    assert main(["import", "megadetector", str(md), str(cards), "--camera", "cam-north-01", "--out", str(fresh)]) == 0
    assert "imported" in capsys.readouterr().out
    runs = DagsterInstance.get().get_runs(limit=3)
    camera_run = next(r for r in runs if r.job_name == "camera_job" and r.tags.get("dagster/partition") == "cam-north-01")
    logs = [e.user_message for e in DagsterInstance.get().all_logs(camera_run.run_id)]
    assert any("every media already detected" in m for m in logs)  # no GPU job for imported media

    def rows(root):
        return pq.read_table(root / "detections" / "camera_id=cam-north-01" / "data.parquet").to_pylist()

    imported, original = rows(fresh), rows(output)
    # The MegaDetector format knows only animal/person/vehicle (the detector's own label is gone) and
    # keeps boxes to 4 decimals, confidences to 3: the same detections otherwise.
    # A camera-background box comes back as a detector box of its image (the format has no source):
    # its media and frame are kept, its index within the frame is the import's own.
    sources = [r["source"] for r in original]

    def ids(rows):
        return [(r["detection_id"].rsplit("-", 1)[0] if source == "background" else r["detection_id"], r["category"])
                for r, source in zip(rows, sources)]

    assert len(imported) == len(original) and ids(imported) == ids(original)
    assert {r["label"] for r in imported} <= {"animal", "person", "vehicle"}
    for a, b in zip(imported, original):
        assert abs(a["conf"] - b["conf"]) <= 0.0006
        assert all(abs(a[k] - b[k]) <= 0.00006 for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
    crops = pq.read_table(fresh / "crops" / "camera_id=cam-north-01" / "data.parquet").to_pylist()
    assert crops and all((fresh / c["crop_path"]).is_file() and c["width"] for c in crops)

    again = tmp_path / "again.json"
    assert main(["export", "megadetector", str(again), "--out", str(fresh), "--camera", "cam-north-01"]) == 0
    first, second = json.loads(md.read_text()), json.loads(again.read_text())
    # Species classifications are redone by Stage 2 on the imported boxes; the detections are unchanged.
    def boxes(doc):
        return [(im["file"], [(d["category"], d["conf"], d["bbox"]) for d in im.get("detections") or []], im.get("failure"))
                for im in doc["images"]]

    assert boxes(first) == boxes(second)
