"""A detection history of the sample cameras equals the one worked out by hand below.

The media are the real sample cards, probed by the ``raw_images`` asset; a ``deployments.csv`` and a
``camera_operation.csv`` beside them give the north cameras a few days around their day of photos,
cam-south-01 a week of silence before its first photo (a suspected outage at its own 3-day
threshold) and cam-north-02 a confirmed day off. The events are the truth's (Stage 1 and 2 are
measured in ``bench``). From there the user's run: the Dagster assets on a real instance, Parquet,
the Stage 3 database and the CLI.
"""

from __future__ import annotations

import csv
import shutil
from collections import defaultdict
from datetime import date, datetime

import pyarrow as pa
import pytest
from dagster import DagsterInstance, materialize

from gpu_ops import schemas
from gpu_ops.storage import Storage
from odins_ravne_assets.cli import main
from odins_ravne_assets.hugin_assets import deployments, gps_clusters, stage3_database
from odins_ravne_assets.munin_assets import raw_images
from odins_ravne_assets.sample_data.cameras import CAMERAS
from resources.pipeline import PipelineResource
from resources.stage3 import query

pytestmark = pytest.mark.slow

# One numeric date decides the file's order (25 > 12: day first).
DEPLOYMENTS_CSV = """camera_id,start,end,max_silence_days
cam-north-01,2024-05-30T12:00:00,2024-06-03T12:00:00,
cam-north-02,2024-05-31T08:00:00,2024-06-02T18:00:00,
cam-south-01,25/05/2024 10:00,2024-06-04T10:00:00,3
"""
OPERATION_CSV = "camera_id,start,end,operating,note\ncam-north-02,2024-06-02,2024-06-02,false,knocked over\n"

# By hand, occasions of 2 days from each station's first day, for "dog" (cam-north-01 and -02 on 06-01):
# - the north site (cam-north-01 05-30 12:00 to 06-03 12:00, with cam-north-02): 05-30..31, 06-01..02, 06-03
# - cam-south-01 from 05-25: silent from setup to its first photo, 06-01 02:47:42 (6.7 days > 3): the
#   occasions 05-25..26, 27..28, 29..30 are NA; 05-31..06-01, 06-02..03 and 06-04 operate, without a dog
# - cam-nogps-01 and cam-zero-01: deployments from their media, one day each (06-02)
DOG = {"cam-north-01": [0, 1, 0, None, None, None], "cam-south-01": [None, None, None, 0, 0, 0],
       "cam-nogps-01": [0, None, None, None, None, None], "cam-zero-01": [0, None, None, None, None, None]}
SOUTH_EFFORT = (datetime(2024, 6, 4, 10) - datetime(2024, 6, 1, 2, 47, 42)).total_seconds() / 86400
NORTH_02_EFFORT = 1 + 16 / 24  # 05-31 08:00 to 06-02 00:00: the CSV takes 06-02 whole


def _events_from_truth(truth: list[dict], camera: str) -> pa.Table:
    """One event per trigger of the truth, dated by its first frame."""
    frames = defaultdict(list)
    for row in truth:
        if row["camera_id"] == camera and row["kind"] in ("image", "video"):
            frames[row["event_id"]].append(row)
    rows = []
    for event_id, shots in sorted(frames.items()):
        person = shots[0]["coco_label"] == "person"
        rows.append({"camera_id": camera, "event_id": event_id, "category": "person" if person else "animal",
                     "species": "human" if person else shots[0]["label"],
                     "start": min(datetime.fromisoformat(r["timestamp"]) for r in shots),
                     "end": max(datetime.fromisoformat(r["timestamp"]) for r in shots), "n_media": len(shots)})
    return pa.Table.from_pylist(rows, schema=schemas.EVENTS)


def test_the_sample_cameras_detection_history_equals_the_hand_worked_one(sample_cards, dagster_home, tmp_path):
    cards, summary = sample_cards
    cards_in = tmp_path / "in"
    shutil.copytree(cards, cards_in)
    (cards_in / "deployments.csv").write_text(DEPLOYMENTS_CSV)
    (cards_in / "camera_operation.csv").write_text(OPERATION_CSV)
    out = tmp_path / "out"
    pipeline = PipelineResource(input_root=str(cards_in), output_root=str(out))
    instance = DagsterInstance.get()
    cameras = [c.camera_id for c in CAMERAS]
    instance.add_dynamic_partitions("cameras", cameras)
    output = Storage(str(out))
    for camera in cameras:
        assert materialize([raw_images, deployments], partition_key=camera, instance=instance,
                           resources={"pipeline": pipeline}).success
        output.write_parquet(schemas.camera_key("events", camera), _events_from_truth(summary["truth"], camera))
    assert materialize([gps_clusters, stage3_database], instance=instance, resources={"pipeline": pipeline}).success

    operation = output.read_parquet("camera_operation", empty=schemas.CAMERA_OPERATION)
    effort = defaultdict(float)
    for row in operation.to_pylist():
        effort[row["camera_id"]] += row["effort_days"]
    assert effort["cam-south-01"] == pytest.approx(SOUTH_EFFORT)
    assert effort["cam-north-02"] == pytest.approx(NORTH_02_EFFORT)
    south = {r["date"]: r for r in operation.to_pylist() if r["camera_id"] == "cam-south-01"}
    assert [d.day for d, r in south.items() if r["source"] == "suspected_outage"] == [25, 26, 27, 28, 29, 30, 31]
    assert {r["source"] for r in operation.to_pylist() if r["camera_id"] == "cam-north-02" and r["date"] == date(2024, 6, 2)} \
        == {"camera_operation.csv"}

    site_of = {r["camera_id"]: r["site_id"] for r in output.read_parquet("clusters").to_pylist()}
    assert site_of["cam-north-01"] == site_of["cam-north-02"]
    want = {site_of[camera]: cells for camera, cells in DOG.items()}

    dest = tmp_path / "dog.csv"
    assert main(["export", "detection-history", str(dest), "--out", str(out), "--species", "dog",
                 "--occasion-days", "2"]) == 0
    with dest.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["station", "o1", "o2", "o3", "o4", "o5", "o6"]
    assert {r[0]: [None if v == "NA" else int(v) for v in r[1:]] for r in rows[1:]} == want

    _, cells = query(output, "SELECT station, occasion, detected FROM detection_history('dog', 2)")
    got = defaultdict(list)
    for station, occasion, detected in cells:
        got[station].append(detected)
    assert dict(got) == want
    # the Stage 3 sites count the same operating days
    _, nights = query(output, "SELECT site_id, trap_nights FROM sites")
    assert dict(nights)[site_of["cam-south-01"]] == pytest.approx(SOUTH_EFFORT)
