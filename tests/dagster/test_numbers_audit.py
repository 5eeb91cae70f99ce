"""The numbers audit: on the sample cameras, whose right answer is known by construction, every event's
species, start, end and max_count, and every site's trap-nights, equal the truth.

The media are the real sample cards, probed by the ``raw_images`` asset (real EXIF and video times,
the photo without EXIF, the broken files). The detections are built from the truth: where
``sample_data.cameras`` pasted each animal (its box, frame by frame) with the species Stage 2 would
name, plus what real detectors and motion add around one animal (a box of its head or body inside
the whole animal, a motion-only box at its edge, two boxes on one person), and bursts with a known
number of animals (two people, a flock of three). Stage 1 and 2 are not what is audited here (their
recall is measured in ``bench``); the numbers Hugin derives from their output are. Everything from
there on runs as the user's run does: the Dagster assets on a real instance, Parquet, DuckDB.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from dagster import DagsterInstance, materialize

from gpu_ops import schemas
from gpu_ops.storage import Storage
from odins_ravne_assets.hugin.deployments import trap_nights
from odins_ravne_assets.hugin.sites import site_summary
from odins_ravne_assets.hugin_assets import condensed_reports, deployments, gps_clusters, stage3_database
from odins_ravne_assets.munin_assets import raw_images
from odins_ravne_assets.sample_data.cameras import CAMERAS, EVENTS
from odins_ravne_assets.sample_data.sources import Photos, default_sources_dir
from resources.pipeline import PipelineResource
from resources.stage3 import query

pytestmark = pytest.mark.slow

# Photo events: the boxes of the animals in them, and so their number (known by construction).
PHOTO_BOXES = {
    "people.jpg": [(0.576, 0.011, 0.336, 0.989), (0.234, 0.271, 0.387, 0.729)],  # zidane.jpg's two people
    "ocelot.jpg": [(0.35, 0.45, 0.3, 0.3)],
    "sheep.jpg": [(0.2, 0.5, 0.1, 0.08), (0.45, 0.52, 0.1, 0.08), (0.7, 0.5, 0.1, 0.08)],
}
NO_EXIF_LABEL = "wild boar"  # cam-zero-01's photo without EXIF (sample_data.cameras.broken_files)


def _animal_box(event, frame_no: int, photos: Photos) -> tuple[float, float, float, float]:
    camera = next(c for c in CAMERAS if c.camera_id == event.camera_id)
    stamp = photos.get(event.subject)
    width, height = camera.size
    h = event.height
    w = stamp.width * (h * height) / stamp.height / width
    x = event.x0 + event.step * frame_no
    return (max(0.0, x), event.ground - h, min(w, 1.0 - max(0.0, x)), h)


def _detections_from_truth(truth: list[dict], media: pa.Table, photos: Photos):
    """Detections and species labels per camera, and the expected events, from the truth rows."""
    sha = {(r["camera_id"], r["file_path"]): r["sha256"] for r in media.to_pylist()}
    event_of = {f"{e.camera_id}/e{i:02d}": e for i, e in enumerate(EVENTS)}
    detections, labels = defaultdict(list), defaultdict(list)
    expected: dict[tuple[str, str], dict] = {}
    frame_of: dict[str, int] = defaultdict(int)

    def add(row, box, *, category="animal", label, species, source="detector", conf=0.9):
        camera, path = row["camera_id"], row["file_path"]
        digest = sha[(camera, path)]
        index = sum(1 for d in detections[camera] if d["file_path"] == path)
        det_id = f"{digest[:16]}-0-{index}"
        detections[camera].append({
            "camera_id": camera, "detection_id": det_id, "file_path": path, "sha256": digest, "frame_number": 0,
            "timestamp": None, "category": category, "label": label, "conf": conf,
            "bbox_x": box[0], "bbox_y": box[1], "bbox_w": box[2], "bbox_h": box[3], "source": source, "model": "truth",
        })
        if category == "animal":
            labels[camera].append({
                "camera_id": camera, "detection_id": det_id, "file_path": path, "category": category,
                "detector_label": label, "species": species, "scientific_name": None, "score": 0.9,
                "classification_source": "truth",
            })

    for row in truth:
        if row["kind"] == "no_exif":
            add(row, (0.3, 0.5, 0.3, 0.3), label="pig", species=NO_EXIF_LABEL)
            expected[(row["camera_id"], NO_EXIF_LABEL + " (no time)")] = {
                "species": NO_EXIF_LABEL, "start": None, "end": None, "max_count": 1}
            continue
        if row["kind"] not in ("image", "video"):
            continue
        event = event_of[row["event_id"]]
        frame_no = frame_of[row["event_id"]]
        frame_of[row["event_id"]] += 1
        taken = datetime.fromisoformat(row["timestamp"])
        person = event.coco_label == "person"
        if event.kind == "animal":
            box = _animal_box(event, frame_no, photos)
            boxes = [box]
            add(row, box, label=event.coco_label or "animal", species=event.label)
            # The detector also boxes its body; motion outlines its moving edge (the demo's horse).
            add(row, (box[0] + box[2] * 0.3, box[1] + box[3] * 0.2, box[2] * 0.4, box[3] * 0.7),
                label=event.coco_label or "animal", species=event.label, conf=0.5)
            add(row, (min(box[0] + box[2] + 0.002, 0.97), box[1] + box[3] * 0.2, 0.03, 0.06),
                label="motion", species="animal", source="motion", conf=0.3)
        else:
            boxes = PHOTO_BOXES.get(event.subject, [(0.3, 0.3, 0.3, 0.3)])
            for box in boxes:
                add(row, box, category="person" if person else "animal", label=event.coco_label or "animal",
                    species=event.label)
            if person:  # a second, loose box on the left person (IoU 0.41 with the first, as on the demo)
                add(row, (0.074, 0.297, 0.394, 0.698), category="person", label="person", species=event.label, conf=0.32)
        key = (row["camera_id"], row["event_id"])
        want = expected.setdefault(key, {"species": "human" if person else event.label, "start": taken,
                                         "end": taken, "max_count": len(boxes)})
        want["start"], want["end"] = min(want["start"], taken), max(want["end"], taken)
    return detections, labels, expected


def _timed(table: pa.Table, media: pa.Table) -> pa.Table:
    """Detections take their media's time, as munin.publish does (videos: frame 0 at the clip's start)."""
    when = {(r["camera_id"], r["file_path"]): r["timestamp"] for r in media.to_pylist()}
    rows = table.to_pylist()
    for r in rows:
        r["timestamp"] = when[(r["camera_id"], r["file_path"])]
    return pa.Table.from_pylist(rows, schema=schemas.DETECTIONS)


def _true_trap_nights(truth: list[dict]) -> dict[str, float]:
    """Per camera, first to last capture time of its files that have one (not the photo without EXIF)."""
    times = defaultdict(list)
    for row in truth:
        if row["kind"] in ("image", "empty", "video"):
            times[row["camera_id"]].append(datetime.fromisoformat(row["timestamp"]))
    return {c: (max(t) - min(t)).total_seconds() / 86400.0 for c, t in times.items()}


def test_every_event_and_every_sites_effort_equal_the_truth(sample_cards, dagster_home, tmp_path):
    cards, summary = sample_cards
    truth = summary["truth"]
    cameras = [c.camera_id for c in CAMERAS]
    out = tmp_path / "out"
    pipeline = PipelineResource(input_root=str(cards), output_root=str(out))
    instance = DagsterInstance.get()
    instance.add_dynamic_partitions("cameras", cameras)
    output = Storage(str(out))
    photos = Photos(default_sources_dir())

    expected = {}
    for camera in cameras:
        assert materialize([raw_images], partition_key=camera, instance=instance, resources={"pipeline": pipeline}).success
        media = output.read_parquet(schemas.camera_prefix("media", camera))
        detections, labels, want = _detections_from_truth([r for r in truth if r["camera_id"] == camera], media, photos)
        expected.update(want)
        output.write_parquet(schemas.camera_key("detections", camera),
                             _timed(pa.Table.from_pylist(detections[camera], schema=schemas.DETECTIONS), media))
        output.write_parquet(schemas.camera_key("species_labels", camera),
                             pa.Table.from_pylist(labels[camera], schema=schemas.SPECIES_LABELS))
        assert materialize([deployments, condensed_reports], partition_key=camera, instance=instance,
                           resources={"pipeline": pipeline}).success
    assert materialize([gps_clusters, stage3_database], instance=instance, resources={"pipeline": pipeline}).success

    events = output.read_parquet("events", empty=schemas.EVENTS)
    def order(row):
        return tuple(str(v) for v in row)

    found = sorted(((e["camera_id"], e["species"], e["start"], e["end"], e["max_count"])
                    for e in events.to_pylist() if e["category"] != "blank"), key=order)
    want = sorted(((camera, w["species"], w["start"], w["end"], w["max_count"]) for (camera, _), w in expected.items()),
                  key=order)
    assert found == want

    # Effort: from each camera's first to last capture time; the photo without EXIF adds none.
    true_nights = _true_trap_nights(truth)
    media = output.read_parquet("media")
    nights = trap_nights(output.read_parquet("deployments", empty=schemas.DEPLOYMENTS), media)
    assert nights == pytest.approx(true_nights)
    clusters = output.read_parquet("clusters", empty=schemas.CLUSTERS)
    sites, _ = site_summary(events, clusters, nights)
    site_of = {r["camera_id"]: r["site_id"] for r in clusters.to_pylist()}
    true_sites = defaultdict(float)
    for camera, n in true_nights.items():
        true_sites[site_of[camera]] += n
    assert {r["site_id"]: r["trap_nights"] for r in sites.to_pylist()} == pytest.approx(dict(true_sites))
    columns, rows = query(output, "SELECT site_id, trap_nights FROM sites")
    assert dict(rows) == pytest.approx(dict(true_sites))
    # Site first_seen is the earliest true animal start at the site, never the file time of the photo without EXIF.
    for site in sites.to_pylist():
        starts = [w["start"] for (camera, _), w in expected.items()
                  if site_of[camera] == site["site_id"] and w["start"] is not None and w["species"] != "human"]
        assert site["first_seen"] == (min(starts) if starts else None)
