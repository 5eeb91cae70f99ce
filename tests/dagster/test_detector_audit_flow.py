"""The detector audit through Dagster: a reviewed sample says how many animals the detector missed.

The media are real JPEGs probed by ``raw_images``. The detections and Stage 1's infrared
judgement (the thumbnails table) are written from the construction: what is tested is what the
platform makes of the reviews, not the detector. By construction the camera has 6 daylight and 6
infrared frames; the detector boxes 4 of the daylight ones and 2 of the infrared ones. The reviewer
goes through all 12 (the whole camera, so the estimate is exact and its interval closed): every box is an animal, no
unboxed daylight frame holds one, 3 of the 4 unboxed infrared frames do. Recall is then 6 of 9
animal frames in all, 2 of 5 at night, and the camera's counts are lower bounds.
"""

from __future__ import annotations

import csv

import pyarrow as pa
import pytest
from dagster import DagsterInstance, materialize
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
    **{f"day{i}.jpg": (False, i < 4, i < 4) for i in range(6)},
    **{f"night{i}.jpg": (True, i < 2, i < 5) for i in range(6)},
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


def test_reviews_of_the_negatives_flag_a_camera_whose_detector_misses_animals_at_night(dagster_home, tmp_path, capsys):
    cards, out = tmp_path / "cards", tmp_path / "out"
    for n, name in enumerate(sorted(FRAMES)):
        write_jpeg(ASSETS / "bus.jpg", cards / CAMERA / name, when=f"2026:06:01 {n:02d}:00:00", gps=(60.1, 10.2), scale=0.2)
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
        return meta, audit

    # Before any review nothing can be said, and the report says so rather than a recall.
    meta, audit = run_camera()
    assert meta["detector_audit"].value == "not_audited" and meta["detector_recall"].value == "not estimated"
    assert sorted(audit) == ["all", "daylight", "infrared"]
    assert {r["status"] for r in audit.values()} == {"not_audited"}
    assert (audit["infrared"]["positives"], audit["infrared"]["negatives"]) == (2, 4)

    # First the user's way: `review sample` draws 8 (4 boxed, 4 not, both lightings on both sides),
    # the reviewer fills it in, it goes back in. The estimate is then an estimate, inside its interval.
    assert main(["review", "sample", "--per-camera", "8", "--out", str(tmp_path / "sample"), "--results", str(out)]) == 0
    drawn = list(csv.DictReader((tmp_path / "sample" / "review_sample.csv").open()))
    assert sorted((r["Kind"], FRAMES[r["File"]][0]) for r in drawn) == sorted(
        [("positive", False)] * 3 + [("positive", True)] + [("negative", False)] + [("negative", True)] * 3)
    for r in drawn:
        r["Species"] = "Vulpes vulpes" if FRAMES[r["File"]][2] else "blank"
    with (tmp_path / "sample" / "filled.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(drawn[0]))
        writer.writeheader()
        writer.writerows(drawn)
    assert main(["review", "import", str(tmp_path / "sample" / "filled.csv"), "--format", "timelapse", "--results", str(out)]) == 0
    _, audit = run_camera()
    assert (audit["all"]["reviewed_positives"], audit["all"]["reviewed_negatives"]) == (4, 4)
    assert audit["all"]["recall_low"] <= 6 / 9 <= audit["all"]["recall_high"]
    assert audit["all"]["status"] != "ok"

    # Then the whole camera: species where an animal is, blank where none.
    review_csv = tmp_path / "timelapse.csv"
    with review_csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["RelativePath", "File", "DateTime", "Species", "Count"])
        writer.writeheader()
        for name, (_, _, animal) in sorted(FRAMES.items()):
            writer.writerow({"RelativePath": CAMERA, "File": name, "DateTime": "",
                             "Species": "Vulpes vulpes" if animal else "blank", "Count": "1" if animal else ""})
    assert main(["review", "import", str(review_csv), "--format", "timelapse", "--results", str(out)]) == 0
    capsys.readouterr()

    meta, audit = run_camera()
    night, day, both = audit["infrared"], audit["daylight"], audit["all"]
    assert (night["reviewed_negatives"], night["missed_negatives"], night["confirmed_positives"]) == (4, 3, 2)
    assert night["recall"] == pytest.approx(2 / 5) and night["est_missed_media"] == pytest.approx(3)
    assert day["recall"] == pytest.approx(1.0) and day["status"] == "ok"
    assert both["recall"] == pytest.approx(6 / 9) and both["est_animal_media"] == pytest.approx(9)
    assert night["status"] == both["status"] == "misses_animals"
    # Every frame reviewed: nothing is left to estimate, the interval is the recall itself.
    assert both["recall_low"] == pytest.approx(6 / 9) and both["recall_high"] == pytest.approx(6 / 9)
    assert meta["detector_audit"].value == "misses_animals" and meta["detector_recall"].value == pytest.approx(6 / 9)

    # Stage 3 serves the audit, and the reports warn that the camera's counts are lower bounds.
    assert materialize([gps_clusters, reports, stage3_database], instance=instance, resources={"pipeline": pipeline}).success
    _, rows = query(output, "SELECT lighting, status, round(recall, 3) FROM detector_audit ORDER BY lighting")
    assert rows == [("all", "misses_animals", 0.667), ("daylight", "ok", 1.0), ("infrared", "misses_animals", 0.4)]
    project = (out / "reports" / "index.html").read_text()
    camera = (out / "reports" / "cameras" / CAMERA / "index.html").read_text()
    for page in (project, camera):
        assert "Counts are lower bounds" in page and CAMERA in page
