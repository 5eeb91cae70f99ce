import csv
import json
from datetime import timedelta

import pyarrow as pa
import pytest
from hugin_tables import T0, Shots

from gpu_ops import schemas
from odins_ravne_assets.hugin.clusters import cluster_cameras
from odins_ravne_assets.hugin.deployments import apply_clock_offsets, build_deployments, read_deployments_csv
from odins_ravne_assets.hugin.events import condense_events
from gpu_ops import megadetector_format
from gpu_ops.megadetector_format import read_batch_output
from odins_ravne_assets.hugin.camtrap_dp_export import export_camtrap_dp, validate_camtrap_dp
from odins_ravne_assets.hugin.megadetector_export import export_megadetector
from odins_ravne_assets.hugin.sensitive_species import generalize


def project():
    """cam-a: elk and a lynx (sensitive) at a known spot; cam-b: a fox, a person, a blank burst;
    cam-c: no GPS (cannot be a Camtrap DP deployment); one failed file and one video."""
    a = Shots("cam-a")
    a.shot(0, ("elk", 0.9), ("elk", 0.8), lat=62.123456, lon=10.654321)
    a.shot(1, ("elk", 0.85), lat=62.123456, lon=10.654321)
    a.shot(300, ("lynx", 0.7), lat=62.123456, lon=10.654321)
    a.shot(400, status="failed", lat=None)
    a.media[-1]["failure"] = "truncated JPEG: image file is truncated"
    b = Shots("cam-b")
    b.shot(0, ("red fox", 0.6), lat=61.5, lon=9.5)
    b.shot(60, ("person", 0.9, "person"), lat=61.5, lon=9.5)
    b.shot(200, lat=61.5, lon=9.5)
    # a video: frames 0 and 30 at 15 fps
    path = b.shot(500, ("red fox", 0.8), file_path="CLIP.MP4", lat=61.5, lon=9.5)
    b.media[-1].update(media_type="video", frame_count=90, frame_rate=15.0)  # measured at ingest
    det = dict(b.detections[-1])
    det.update(detection_id=det["detection_id"].replace("-0-0", "-30-0"), frame_number=30,
               timestamp=det["timestamp"] + timedelta(seconds=2), conf=0.75)
    b.detections.append(det)
    assert path == "CLIP.MP4"
    c = Shots("cam-c")
    c.shot(0, ("badger", 0.9))
    parts = [s.tables() for s in (a, b, c)]
    media, detections, labels = (pa.concat_tables([p[i] for p in parts]) for i in range(3))
    return media, detections, labels


def test_camtrap_dp_package_validates_and_hides_sensitive_species(tmp_path):
    media, detections, labels = project()
    csv_table = read_deployments_csv(b"camera_id,timezone,clock_offset_s,bait,habitat\ncam-a,Europe/Oslo,0,none,bog\n")
    deployments = build_deployments(media, csv_table)
    media = apply_clock_offsets(media, deployments)
    detections = apply_clock_offsets(detections, deployments)
    events = condense_events(labels, detections, window_minutes=10, min_confidence=0.3, media=media)
    result = export_camtrap_dp(tmp_path / "dp", media=media, detections=detections, species_labels=labels,
                               events=events, deployments=deployments, clusters=cluster_cameras(media),
                               sensitive_species=["Sci lynx"])
    assert validate_camtrap_dp(result.datapackage) == []
    assert result.skipped_cameras == {"cam-c": "no coordinates (no GPS in its media and none in deployments.csv)"}
    assert result.generalized_cameras == ["cam-a"]

    deps = {r["deploymentID"]: r for r in csv.DictReader((tmp_path / "dp/deployments.csv").open())}
    assert (deps["cam-a"]["latitude"], deps["cam-a"]["longitude"]) == ("62.1", "10.7")
    assert int(deps["cam-a"]["coordinateUncertainty"]) == generalize(62.12, 10.65, 1)[2] > 5000
    assert (deps["cam-b"]["latitude"], deps["cam-b"]["coordinateUncertainty"]) == ("61.5", "")
    # Oslo in June is UTC+2; cam-b has no known zone: UTC, flagged
    assert deps["cam-a"]["deploymentStart"] == "2024-06-01T04:00:00+02:00"
    assert (deps["cam-a"]["timestampIssues"], deps["cam-b"]["timestampIssues"]) == ("false", "true")
    assert deps["cam-a"]["baitUse"] == "false"
    assert not any("62.12" in line for line in (tmp_path / "dp/deployments.csv").read_text().splitlines())

    obs = list(csv.DictReader((tmp_path / "dp/observations.csv").open()))
    event_level = [o for o in obs if o["observationLevel"] == "event"]
    assert sorted((o["deploymentID"], o["observationType"], o["scientificName"], o["count"]) for o in event_level) == [
        ("cam-a", "animal", "Sci elk", "2"), ("cam-a", "animal", "Sci lynx", "1"),
        ("cam-b", "animal", "Sci red fox", "1"), ("cam-b", "animal", "Sci red fox", "1"),  # video: one per frame
        ("cam-b", "blank", "", ""), ("cam-b", "human", "Homo sapiens", "1")]
    media_level = [o for o in obs if o["observationLevel"] == "media"]
    assert len(media_level) == 8 and all(o["mediaID"] and o["bboxWidth"] for o in media_level)
    elk = next(o for o in media_level if o["scientificName"] == "Sci elk")
    assert elk["eventID"] == next(o["eventID"] for o in event_level if o["scientificName"] == "Sci elk")
    package = json.loads(result.datapackage.read_text())
    assert package["profile"].endswith("/1.0/camtrap-dp-profile.json")
    assert {t["scientificName"] for t in package["taxonomic"]} == {"Sci elk", "Sci lynx", "Sci red fox"}
    assert result.counts == {"deployments": 2, "media": 7, "observations": 14}


def test_validation_catches_a_broken_package(tmp_path):
    media, detections, labels = project()
    deployments = build_deployments(media)
    events = condense_events(labels, detections, window_minutes=10, min_confidence=0.3)
    result = export_camtrap_dp(tmp_path, media=media, detections=detections, species_labels=labels,
                               events=events, deployments=deployments)
    assert validate_camtrap_dp(result.datapackage) == []
    obs = tmp_path / "observations.csv"
    obs.write_text(obs.read_text().replace(",animal,", ",dragon,", 1).replace("cam-b", "cam-zz", 1))
    errors = validate_camtrap_dp(result.datapackage)
    assert any("dragon" in e or "constraint" in e for e in errors)
    assert any("foreign" in e.lower() for e in errors)


def test_megadetector_export_round_trips_through_import(tmp_path):
    media, detections, labels = project()
    first = export_megadetector(tmp_path / "run.json", media=media, detections=detections, species_labels=labels)
    assert first["info"]["format_version"] == "1.6"
    assert first["detection_categories"] == {"1": "animal", "2": "person", "3": "vehicle"}
    by_file = {i["file"]: i for i in first["images"]}
    assert by_file["cam-a/IMG_0003.JPG"] == {"file": "cam-a/IMG_0003.JPG", "failure": "truncated JPEG: image file is truncated",
                                              "detections": None}
    assert by_file["cam-b/IMG_0002.JPG"]["detections"] == []
    clip = by_file["cam-b/CLIP.MP4"]
    assert clip["frame_rate"] == 15.0 and clip["frames_processed"] == [0, 30]
    assert [d["frame_number"] for d in clip["detections"]] == [0, 30]
    elk = by_file["cam-a/IMG_0000.JPG"]["detections"][0]
    assert elk["bbox"] == [0.1, 0.1, 0.2, 0.2] and elk["category"] == "1"
    assert first["classification_categories"][elk["classifications"][0][0]] == "elk"

    again = read_batch_output(tmp_path / "run.json")
    second = export_megadetector(tmp_path / "again.json", media=again.media, detections=again.detections,
                                 species_labels=again.species_labels, info=again.info)
    assert second == first
    assert (tmp_path / "again.json").read_bytes() == (tmp_path / "run.json").read_bytes()


def test_per_camera_file_and_import_against_the_manifest_reproduce_stage1_ids(tmp_path):
    media, detections, labels = project()
    export_megadetector(tmp_path / "cam-a.json", media=media, detections=detections, camera_id="cam-a")
    doc = json.loads((tmp_path / "cam-a.json").read_text())
    assert [i["file"] for i in doc["images"]] == ["IMG_0000.JPG", "IMG_0001.JPG", "IMG_0002.JPG", "IMG_0003.JPG"]
    assert "classification_categories" not in doc

    cam_a_media = media.filter(pa.compute.equal(media["camera_id"], "cam-a"))
    got = read_batch_output(tmp_path / "cam-a.json", camera_id="cam-a", media=cam_a_media)
    got_media, got_dets = got.media, got.detections
    assert got_media.schema == megadetector_format.MEDIA_SCHEMA and got_dets.schema == schemas.DETECTIONS
    assert got_media.schema.names[:len(schemas.MEDIA)] == schemas.MEDIA.names  # the contract's media, plus video extras
    want = detections.filter(pa.compute.equal(detections["camera_id"], "cam-a"))
    assert sorted(got_dets["detection_id"].to_pylist()) == sorted(want["detection_id"].to_pylist())
    assert got_dets.column("timestamp").to_pylist()[0] == T0
    assert got_media.column("status").to_pylist() == ["ok", "ok", "ok", "failed"]

    # without the manifest: still joinable, ids from the path
    bare = read_batch_output(tmp_path / "cam-a.json", camera_id="cam-a").detections
    assert bare.num_rows == 4 and bare["sha256"].null_count == 4


def test_importing_a_foreign_file(tmp_path):
    path = tmp_path / "md.json"
    path.write_text(json.dumps({
        "info": {"format_version": "1.4", "detector": "md_v5a.0.0.pt"},
        "detection_categories": {"1": "animal", "2": "person", "3": "vehicle", "7": "sign"},
        "images": [
            {"file": "camX\\sub\\a.jpg", "detections": [{"category": "1", "conf": 0.5, "bbox": [0.1, 0.2, 0.3, 0.4]},
                                                    {"category": "7", "conf": 0.9, "bbox": [0, 0, 1, 1]}]},
            {"file": "camX/b.jpg", "failure": "Failure image access", "detections": None},
        ]}))
    found = read_batch_output(path)
    media, dets = found.media, found.detections
    assert media.column("file_path").to_pylist() == ["sub/a.jpg", "b.jpg"]
    assert dets.to_pylist()[0]["model"] == "md_v5a.0.0.pt" and dets.num_rows == 1
    with pytest.raises(ValueError, match="has no camera folder"):
        read_batch_output({"detection_categories": {}, "images": [{"file": "a.jpg", "detections": []}]})
    with pytest.raises(ValueError, match="batch output file"):
        read_batch_output({"results": []})


def test_a_video_with_nothing_in_it_still_exports(tmp_path):
    s = Shots("cam-v")
    s.shot(0, file_path="EMPTY.MP4")
    s.media[-1].update(media_type="video", frame_count=40)
    media, detections, _ = s.tables()
    doc = export_megadetector(None, media=media, detections=detections)
    assert doc["images"] == [{"file": "cam-v/EMPTY.MP4", "frames_processed": [0], "detections": []}]
    again = read_batch_output(doc)
    assert export_megadetector(None, media=again.media, detections=again.detections, info=again.info) == doc
