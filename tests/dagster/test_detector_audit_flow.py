"""The detector audit through Dagster: a reviewed sample says how many animals the counts miss.

The media are real JPEGs probed by ``raw_images``. The detections and Stage 1's infrared
judgement (the thumbnails table) are written from the construction: what is tested is what the
platform makes of the reviews, not the detector. By construction the camera has 10 daylight and 30
infrared frames; the detector boxes 6 daylight frames and 5 infrared ones, all with an animal; of
the unboxed frames no daylight one holds an animal and 20 of the 25 infrared ones do. The detector
finds 11 of 31 animal frames. A sample of 10 reviews (``review sample``, filled in, imported) says
so within its interval and flags the counts as lower bounds; reviewing every frame then makes the
estimate exact and the counts complete (each reviewed animal is in the events), though the
detector still misses animals.
"""

from __future__ import annotations

import csv
from collections import Counter

import pyarrow as pa
import pytest
from dagster import AssetCheckSeverity, DagsterInstance, materialize
from media_support import ASSETS, write_jpeg

from gpu_ops import schemas
from gpu_ops.stage1 import THUMBNAIL_SCHEMA, thumbnails_prefix
from gpu_ops.storage import Storage
from odins_ravne_assets.cli import main
from odins_ravne_assets.hugin_assets import condensed_reports, deployments, gps_clusters, reports, stage3_database
from odins_ravne_assets.munin_assets import raw_images
from resources.pipeline import PipelineResource
from resources.stage3 import query

pytestmark = pytest.mark.slow

CAMERA = "cam-n"
# file -> (infrared, boxed by the detector, an animal in it by the reviewer's eye)
FRAMES = {
    **{f"day{i:02d}.jpg": (False, i < 6, i < 6) for i in range(10)},
    **{f"night{i:02d}.jpg": (True, i < 5, i < 25) for i in range(30)},
}


def _stage1_output(output: Storage) -> None:
    media = output.read_parquet(schemas.camera_prefix("media", CAMERA)).to_pylist()
    detections, thumbs = [], []
    for m in media:
        infrared, boxed, _ = FRAMES[m["file_path"]]
        thumbs.append({"sha256": m["sha256"], "width": 2, "height": 2, "infrared": infrared, "pixels": bytes(4)})
        if boxed:
            detections.append({"camera_id": CAMERA, "detection_id": f"{m['sha256'][:16]}-0-0", "file_path": m["file_path"],
                               "sha256": m["sha256"], "frame_number": 0, "timestamp": m["timestamp"], "category": "animal",
                               "label": "animal", "conf": 0.8, "bbox_x": 0.2, "bbox_y": 0.2, "bbox_w": 0.3, "bbox_h": 0.3,
                               "source": "detector", "model": "construction"})
    output.write_parquet(schemas.camera_key("detections", CAMERA), pa.Table.from_pylist(detections, schema=schemas.DETECTIONS))
    output.write_parquet(f"{thumbnails_prefix(CAMERA)}/construction.parquet", pa.Table.from_pylist(thumbs, schema=THUMBNAIL_SCHEMA))


def _fill(rows: list[dict], path) -> None:
    """The reviewer's Timelapse file: the species where an animal is, blank where none."""
    for r in rows:
        r["Species"], r["Count"] = ("Vulpes vulpes", "1") if FRAMES[r["File"]][2] else ("blank", "")
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_reviews_of_the_negatives_flag_a_camera_whose_counts_miss_animals_at_night(dagster_home, tmp_path, capsys):
    cards, out = tmp_path / "cards", tmp_path / "out"
    for n, name in enumerate(sorted(FRAMES)):
        write_jpeg(ASSETS / "bus.jpg", cards / CAMERA / name, when=f"2026:06:01 {n // 2:02d}:{n % 2 * 30:02d}:00",
                   gps=(60.1, 10.2), scale=0.15)
    pipeline = PipelineResource(input_root=str(cards), output_root=str(out))
    instance = DagsterInstance.get()
    instance.add_dynamic_partitions("cameras", [CAMERA])
    output = Storage(str(out))
    assert materialize([raw_images], partition_key=CAMERA, instance=instance, resources={"pipeline": pipeline}).success
    _stage1_output(output)

    def run_camera():
        result = materialize([deployments, condensed_reports], partition_key=CAMERA, instance=instance,
                             resources={"pipeline": pipeline})
        assert result.success
        meta = next(m for m in result.get_asset_materialization_events()
                    if m.asset_key.path == ["condensed_reports"]).materialization.metadata
        audit = {r["lighting"]: r for r in output.read_parquet(schemas.camera_prefix("detector_audit", CAMERA)).to_pylist()}
        check = next(c for c in result.get_asset_check_evaluations() if c.check_name == "counts_not_lower_bounds")
        assert check.passed == (audit["all"]["counts_status"] != "lower_bounds")  # a warning in the UI where not
        assert check.severity == AssetCheckSeverity.WARN
        assert check.metadata["counts_status"].value == audit["all"]["counts_status"]
        return meta, audit

    def pages() -> tuple[str, str]:
        """The camera's report page and the project's."""
        assert materialize([gps_clusters, reports, stage3_database], instance=instance, resources={"pipeline": pipeline}).success
        return tuple((out / "reports" / path).read_text() for path in (f"cameras/{CAMERA}/index.html", "index.html"))

    # Before any review nothing can be said, and the report says so rather than a recall.
    meta, audit = run_camera()
    assert meta["detector_audit"].value == "not_audited" and meta["detector_recall"].value == "not estimated"
    assert sorted(audit) == ["all", "daylight", "infrared"]
    assert {r["status"] for r in audit.values()} == {r["counts_status"] for r in audit.values()} == {"not_audited"}
    assert (audit["infrared"]["positives"], audit["infrared"]["negatives"]) == (5, 25)

    # The user's way: `review sample` draws 10 (5 boxed, 5 not, both lightings on both sides), the
    # reviewer fills it in, it goes back in. The estimate is an estimate, and holds the truth.
    assert main(["review", "sample", "--per-camera", "10", "--out", str(tmp_path / "sample"), "--results", str(out)]) == 0
    drawn = list(csv.DictReader((tmp_path / "sample" / "review_sample.csv").open()))
    cells = Counter((r["Kind"], FRAMES[r["File"]][0]) for r in drawn)
    assert cells == {("positive", False): 3, ("positive", True): 2, ("negative", False): 1, ("negative", True): 4}
    _fill(drawn, tmp_path / "sample" / "filled.csv")
    assert main(["review", "import", str(tmp_path / "sample" / "filled.csv"), "--format", "timelapse", "--results", str(out)]) == 0
    meta, audit = run_camera()
    both = audit["all"]
    assert (both["reviewed_positives"], both["reviewed_negatives"]) == (5, 5)
    assert both["recall_low"] <= 11 / 31 <= both["recall_high"] < 0.9 and both["status"] == "misses_animals"
    assert both["counts_status"] == "lower_bounds" and meta["counts_audit"].value == "lower_bounds"
    for page in pages():
        assert "Counts are lower bounds" in page and "neither boxed nor reviewed" in page and CAMERA in page

    # Then every frame: nothing is left to estimate, and every animal is in the counts by its review.
    review_csv = tmp_path / "timelapse.csv"
    _fill([{"RelativePath": CAMERA, "File": name, "DateTime": "", "Species": "", "Count": ""} for name in sorted(FRAMES)],
          review_csv)
    assert main(["review", "import", str(review_csv), "--format", "timelapse", "--results", str(out)]) == 0
    capsys.readouterr()
    meta, audit = run_camera()
    night, day, both = audit["infrared"], audit["daylight"], audit["all"]
    assert (night["reviewed_negatives"], night["missed_negatives"], night["confirmed_positives"]) == (25, 20, 5)
    assert night["recall"] == pytest.approx(5 / 25) and night["est_missed_media"] == pytest.approx(20)
    assert day["recall"] == pytest.approx(1.0) and day["status"] == "ok"
    assert both["recall"] == both["recall_low"] == both["recall_high"] == pytest.approx(11 / 31)
    assert night["status"] == both["status"] == "misses_animals"
    assert both["completeness"] == pytest.approx(1.0) and both["counts_status"] == "complete"
    assert meta["detector_audit"].value == "misses_animals" and meta["detector_recall"].value == pytest.approx(11 / 31)
    events = output.read_parquet(schemas.camera_prefix("events", CAMERA)).to_pylist()
    assert sum(e["n_media"] for e in events if e["category"] == "animal") == 31

    # Stage 3 serves the audit; the reports show it and no longer warn.
    camera_page, project_page = pages()
    _, rows = query(output, "SELECT lighting, status, round(recall, 3), counts_status FROM detector_audit ORDER BY lighting")
    assert rows == [("all", "misses_animals", 0.355, "complete"), ("daylight", "ok", 1.0, "complete"),
                    ("infrared", "misses_animals", 0.2, "complete")]
    assert "Detector audit" in camera_page and "Detector audit" in project_page
    assert "Counts are lower bounds" not in camera_page + project_page
