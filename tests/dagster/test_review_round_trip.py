"""The review round trip through Dagster: materialize, import a review, materialize again.

The media are real JPEGs probed by ``raw_images``; the detections and species labels are written
from the construction (Stage 1 and 2 are not what is tested here), as Stage 2 would write them
again on every re-run: the reviewed label must still win.
"""

from __future__ import annotations

import csv

import pyarrow as pa
import pytest
from dagster import DagsterInstance, materialize
from media_support import ASSETS, write_jpeg

from gpu_ops import schemas
from gpu_ops.storage import Storage
from odins_ravne_assets.cli import main
from odins_ravne_assets.hugin_assets import condensed_reports, deployments
from odins_ravne_assets.munin_assets import raw_images
from resources.pipeline import PipelineResource

pytestmark = pytest.mark.slow

CAMERA = "cam-r"


def _model_output(output: Storage) -> None:
    """The model's answer: every frame a red deer (the reviewer will say roe deer for the first)."""
    media = output.read_parquet(schemas.camera_prefix("media", CAMERA)).to_pylist()
    detections, labels = [], []
    for m in sorted(media, key=lambda m: m["file_path"]):
        det_id = f"{m['sha256'][:16]}-0-0"
        detections.append({"camera_id": CAMERA, "detection_id": det_id, "file_path": m["file_path"], "sha256": m["sha256"],
                           "frame_number": 0, "timestamp": m["timestamp"], "category": "animal", "label": "animal",
                           "conf": 0.9, "bbox_x": 0.2, "bbox_y": 0.2, "bbox_w": 0.3, "bbox_h": 0.3, "source": "detector",
                           "model": "construction"})
        labels.append({"camera_id": CAMERA, "detection_id": det_id, "file_path": m["file_path"], "category": "animal",
                       "detector_label": "animal", "species": "red deer", "scientific_name": "Cervus elaphus",
                       "taxon_rank": "species", "taxon_class": "Mammalia", "score": 0.6, "classification_source": "construction"})
    output.write_parquet(schemas.camera_key("detections", CAMERA), pa.Table.from_pylist(detections, schema=schemas.DETECTIONS))
    output.write_parquet(schemas.camera_key("species_labels", CAMERA), pa.Table.from_pylist(labels, schema=schemas.SPECIES_LABELS))


def test_a_reviewed_label_overrides_the_model_and_survives_a_re_run(dagster_home, tmp_path, capsys):
    cards, out = tmp_path / "cards", tmp_path / "out"
    # Two visits an hour apart: the first the reviewer corrects, the second stays the model's.
    for name, when in (("a.jpg", "2026:06:01 05:00:00"), ("b.jpg", "2026:06:01 05:01:00"), ("c.jpg", "2026:06:01 06:30:00")):
        write_jpeg(ASSETS / "bus.jpg", cards / CAMERA / name, when=when, gps=(60.1, 10.2), scale=0.3)
    pipeline = PipelineResource(input_root=str(cards), output_root=str(out))
    instance = DagsterInstance.get()
    instance.add_dynamic_partitions("cameras", [CAMERA])
    output = Storage(str(out))

    def run_camera() -> list[dict]:
        _model_output(output)  # Stage 2 again, with the model's labels
        assert materialize([deployments, condensed_reports], partition_key=CAMERA, instance=instance,
                           resources={"pipeline": pipeline}).success
        events = output.read_parquet(schemas.camera_prefix("events", CAMERA)).to_pylist()
        return sorted(((e["species"], e["scientific_name"], e["n_media"], e["max_count"], e["reviewed"]) for e in events), key=str)

    assert materialize([raw_images], partition_key=CAMERA, instance=instance, resources={"pipeline": pipeline}).success
    assert run_camera() == [("red deer", "Cervus elaphus", 1, 1, False), ("red deer", "Cervus elaphus", 2, 1, False)]

    # A Timelapse export of the first visit, reviewed: two roe deer in a.jpg, one in b.jpg.
    review_csv = tmp_path / "timelapse.csv"
    with review_csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["RelativePath", "File", "DateTime", "Species", "Count"])
        writer.writeheader()
        writer.writerow({"RelativePath": CAMERA, "File": "a.jpg", "DateTime": "2026-06-01 05:00:00",
                         "Species": "Capreolus capreolus", "Count": "2"})
        writer.writerow({"RelativePath": CAMERA, "File": "b.jpg", "DateTime": "2026-06-01 05:01:00",
                         "Species": "Capreolus capreolus", "Count": "1"})
        writer.writerow({"RelativePath": CAMERA, "File": "c.jpg", "DateTime": "2026-06-01 06:30:00", "Species": ""})
    assert main(["review", "import", str(review_csv), "--format", "timelapse", "--results", str(out)]) == 0
    assert "imported 2 reviewed labels" in capsys.readouterr().out
    assert output.exists(schemas.camera_key("reviews", CAMERA))

    want = [("Capreolus capreolus", "Capreolus capreolus", 2, 2, True), ("red deer", "Cervus elaphus", 1, 1, False)]
    assert run_camera() == want
    assert run_camera() == want  # and again: re-runs never lose a review

    # The Camtrap DP export marks the reviewed observations as a person's.
    assert main(["export", "camtrap-dp", str(tmp_path / "dp"), "--out", str(out)]) == 0
    rows = list(csv.DictReader((tmp_path / "dp" / "observations.csv").open()))
    assert {(r["observationLevel"], r["scientificName"], r["classificationMethod"]) for r in rows} == {
        ("media", "Capreolus capreolus", "human"), ("event", "Capreolus capreolus", "human"),
        ("media", "Cervus elaphus", "machine"), ("event", "Cervus elaphus", "machine")}
