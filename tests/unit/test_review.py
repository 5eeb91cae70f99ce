"""Reviewed labels: read from Timelapse, Camtrap DP and MegaDetector files, winning over the model's."""

import csv
import io
import json
from datetime import datetime

import pyarrow as pa
import pytest
from hugin_tables import T0, Shots, table

from gpu_ops import schemas
from gpu_ops.storage import Storage
from odins_ravne_assets.hugin import review
from odins_ravne_assets.hugin.camtrap_dp_export import _media_id
from odins_ravne_assets.hugin.events import condense_events


def deer_camera() -> Shots:
    """cam-a: a roe deer the model calls a red deer (3 frames), a fox, and two empty frames."""
    s = Shots()
    for minute in range(3):
        s.shot(minute, ("red deer", 0.8))
    s.shot(60, ("red fox", 0.9))
    s.shot(120)
    s.shot(180)
    return s


def reviews_table(rows: list[dict]) -> pa.Table:
    return review.merge_reviews(schemas.empty(schemas.REVIEWS), rows, imported_at=datetime(2026, 1, 1))


def events_with(s: Shots, reviews: pa.Table | None) -> list[dict]:
    media, detections, labels = s.tables()
    out = condense_events(labels, detections, window_minutes=10, min_confidence=0.3, reviews=reviews, media=media)
    return [e for e in out.to_pylist()]


def timelapse_csv(rows: list[dict], fields=("RelativePath", "File", "DateTime", "Species", "Count")) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


def test_timelapse_reviews_win_over_the_model():
    s = deer_camera()
    media, _, labels = s.tables()
    data = timelapse_csv([
        {"RelativePath": "cam-a", "File": "IMG_0000.JPG", "Species": "Capreolus capreolus", "Count": "2"},
        {"RelativePath": "cam-a", "File": "IMG_0001.JPG", "Species": ""},  # not reviewed
        {"RelativePath": "cam-a", "File": "IMG_0003.JPG", "Species": "empty"},  # the fox was a leaf
        {"RelativePath": "cam-a", "File": "IMG_0004.JPG", "Species": "red fox", "Count": "1"},  # missed by the detector
        {"RelativePath": "cam-b", "File": "IMG_0004.JPG", "Species": "red fox"},
    ])
    rows, unknown = review.read_timelapse(data, media, labels, source_file="export.csv")
    assert unknown == ["cam-b/IMG_0004.JPG"]
    assert [(r["file_path"], r["observation_type"], r["species"], r["count"]) for r in rows] == [
        ("IMG_0000.JPG", "animal", "Capreolus capreolus", 2), ("IMG_0003.JPG", "blank", None, None),
        ("IMG_0004.JPG", "animal", "red fox", 1)]
    found = {(e["category"], e["species"], e["start"], e["max_count"], e["reviewed"]) for e in events_with(s, reviews_table(rows))}
    assert found == {
        # The reviewed frame keeps the reviewer's label and count; the model's other frames stay red deer.
        ("animal", "Capreolus capreolus", T0, 2, True),
        ("animal", "red deer", T0.replace(minute=1), 1, False),
        ("blank", None, T0.replace(hour=5), 0, False),
        ("animal", "red fox", T0.replace(hour=6), 1, True),
        ("blank", None, T0.replace(hour=7), 0, False),
    }


def test_timelapse_needs_its_columns_and_reads_several_species_fields():
    s = deer_camera()
    media, _, labels = s.tables()
    with pytest.raises(review.ReviewError, match=r"lacks the column\(s\) \['Species'\]"):
        review.read_timelapse(timelapse_csv([], fields=("RelativePath", "File")), media, labels, source_file="x.csv")
    data = timelapse_csv([{"RelativePath": "", "File": "IMG_0003.JPG", "Species": "red fox", "Count": "1",
                           "Species2": "European badger", "Count2": "2"}],
                         fields=("RelativePath", "File", "Species", "Count", "Species2", "Count2"))
    rows, _ = review.read_timelapse(data, media, labels, source_file="x.csv", camera_id="cam-a")
    assert [(r["species"], r["count"]) for r in rows] == [("red fox", 1), ("European badger", 2)]


def test_camtrap_dp_observations_edited_elsewhere():
    s = deer_camera()
    media, detections, labels = s.tables()
    events = condense_events(labels, detections, window_minutes=10, min_confidence=0.3, media=media)
    det = detections.to_pylist()
    model_fox = next(r for r in labels.to_pylist() if r["species"] == "red fox")
    rows = [
        # unchanged machine rows are no reviews
        {"observationID": det[1]["detection_id"], "mediaID": _media_id("cam-a", "IMG_0001.JPG"), "observationLevel": "media",
         "observationType": "animal", "scientificName": "Sci red deer", "count": "1", "classificationMethod": "machine"},
        # a renamed detection relabels it
        {"observationID": det[0]["detection_id"], "mediaID": _media_id("cam-a", "IMG_0000.JPG"), "observationLevel": "media",
         "observationType": "animal", "scientificName": "Capreolus capreolus", "count": "1", "classificationMethod": "machine"},
        # a detection set to blank is dropped
        {"observationID": det[3]["detection_id"], "mediaID": _media_id("cam-a", "IMG_0003.JPG"), "observationLevel": "media",
         "observationType": "blank", "scientificName": "", "count": "", "classificationMethod": "human"},
    ]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    found, unknown = review.read_camtrap_observations(text.getvalue().encode(), media, detections, labels, events,
                                                      source_file="observations.csv")
    assert unknown == [] and model_fox["file_path"] == "IMG_0003.JPG"
    assert sorted((r["file_path"], r["detection_id"], r["observation_type"], r["scientific_name"]) for r in found) == [
        ("IMG_0000.JPG", det[0]["detection_id"], "animal", "Capreolus capreolus"),
        ("IMG_0003.JPG", None, "blank", None)]
    after = {(e["category"], e["species"], e["reviewed"]) for e in events_with(s, reviews_table(found))}
    assert after == {("animal", "Capreolus capreolus", True), ("animal", "red deer", False), ("blank", None, False)}


def test_camtrap_dp_event_level_row_relabels_the_events_media():
    s = deer_camera()
    media, detections, labels = s.tables()
    events = condense_events(labels, detections, window_minutes=10, min_confidence=0.3, media=media)
    deer = next(e for e in events.to_pylist() if e["species"] == "red deer")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["observationID", "eventID", "mediaID", "observationLevel", "observationType",
                                              "scientificName", "count", "classificationMethod"])
    writer.writeheader()
    writer.writerow({"observationID": deer["event_id"], "eventID": deer["event_id"], "mediaID": "", "observationLevel": "event",
                     "observationType": "animal", "scientificName": "Capreolus capreolus", "count": "1",
                     "classificationMethod": "human"})
    found, _ = review.read_camtrap_observations(text.getvalue().encode(), media, detections, labels, events, source_file="o.csv")
    assert sorted(r["file_path"] for r in found) == ["IMG_0000.JPG", "IMG_0001.JPG", "IMG_0002.JPG"]
    (event,) = [e for e in events_with(s, reviews_table(found)) if e["category"] == "animal" and e["reviewed"]]
    assert (event["species"], event["n_media"], event["max_count"]) == ("Capreolus capreolus", 3, 1)


def test_megadetector_file_with_classifications():
    s = deer_camera()
    media, _, labels = s.tables()
    doc = {
        "info": {"format_version": "1.4"}, "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
        "classification_categories": {"0": "roe deer", "1": "red fox"},
        "images": [
            {"file": "IMG_0000.JPG", "detections": [
                {"category": "1", "conf": 0.9, "bbox": [0.1, 0.1, 0.2, 0.2], "classifications": [["0", 0.99]]},
                {"category": "1", "conf": 0.8, "bbox": [0.5, 0.1, 0.2, 0.2], "classifications": [["0", 0.97]]},
                {"category": "1", "conf": 0.05, "bbox": [0.7, 0.7, 0.1, 0.1], "classifications": [["1", 0.5]]}]},
            {"file": "IMG_0003.JPG", "detections": []},
        ],
    }
    rows, unknown = review.read_megadetector_review(json.dumps(doc).encode(), media, labels, source_file="md.json",
                                                    camera_id="cam-a", min_confidence=0.3)
    assert unknown == []
    assert [(r["file_path"], r["observation_type"], r["species"], r["count"]) for r in rows] == [
        ("IMG_0000.JPG", "animal", "roe deer", 2), ("IMG_0003.JPG", "blank", None, None)]
    # Only the images a person checked, where the file says so (AddaxAI's verify step).
    doc["images"][1]["manually_checked"] = True
    rows, _ = review.read_megadetector_review(json.dumps(doc).encode(), media, labels, source_file="md.json",
                                              camera_id="cam-a", min_confidence=0.3)
    assert [r["file_path"] for r in rows] == ["IMG_0003.JPG"]
    del doc["classification_categories"]
    with pytest.raises(review.ReviewError, match="has no classification_categories"):
        review.read_megadetector_review(json.dumps(doc).encode(), media, labels, source_file="md.json", camera_id="cam-a",
                                        min_confidence=0.3)


def test_a_later_review_replaces_an_earlier_one():
    first = reviews_table([review._review("cam-a", "IMG_0000.JPG", "animal", "elk", None, 1, "timelapse", "a.csv"),
                           review._review("cam-a", "IMG_0003.JPG", "animal", "fox", None, 1, "timelapse", "a.csv")])
    second = review.merge_reviews(first, [review._review("cam-a", "IMG_0000.JPG", "blank", None, None, None, "timelapse", "b.csv")])
    assert sorted((r["file_path"], r["observation_type"], r["source_file"]) for r in second.to_pylist()) == [
        ("IMG_0000.JPG", "blank", "b.csv"), ("IMG_0003.JPG", "animal", "a.csv")]


def test_exports_take_the_reviewed_labels():
    s = deer_camera()
    media, detections, labels = s.tables()
    reviews = reviews_table([
        {**review._review("cam-a", "IMG_0000.JPG", "animal", None, None, None, "camtrap-dp", "o.csv",
                          detection_id=detections.column("detection_id")[0].as_py()),
         "species": "roe deer", "scientific_name": "Capreolus capreolus"},
        review._review("cam-a", "IMG_0004.JPG", "animal", "red fox", "Vulpes vulpes", 2, "timelapse", "t.csv"),
    ])
    dets, labs = review.reviewed_tables(media, detections, labels, reviews)
    by_file = {r["file_path"]: r for r in labs.to_pylist()}
    assert (by_file["IMG_0000.JPG"]["scientific_name"], by_file["IMG_0000.JPG"]["classification_method"]) == (
        "Capreolus capreolus", "human")
    assert by_file["IMG_0001.JPG"]["classification_method"] == "machine"
    assert (by_file["IMG_0004.JPG"]["species"], by_file["IMG_0004.JPG"]["count"]) == ("red fox", 2)
    missed = next(d for d in dets.to_pylist() if d["file_path"] == "IMG_0004.JPG")
    assert missed["bbox_w"] is None and missed["timestamp"] == T0.replace(hour=6)
    boxed, _ = review.reviewed_tables(media, detections, labels, reviews, boxes_only=True)
    assert "IMG_0004.JPG" not in set(boxed.column("file_path").to_pylist())


def test_camtrap_dp_export_marks_reviewed_labels_human(tmp_path):
    from odins_ravne_assets.hugin.camtrap_dp_export import export_camtrap_dp, validate_camtrap_dp

    s = Shots()
    for minute in range(3):
        s.shot(minute, ("red deer", 0.8), lat=60.0, lon=10.0)
    s.shot(60, lat=60.0, lon=10.0)
    media, detections, labels = s.tables()
    reviews = reviews_table([review._review("cam-a", "IMG_0000.JPG", "animal", "roe deer", "Capreolus capreolus", 1,
                                            "timelapse", "t.csv"),
                             review._review("cam-a", "IMG_0003.JPG", "animal", "red fox", "Vulpes vulpes", 1,
                                            "timelapse", "t.csv")])
    events = condense_events(labels, detections, window_minutes=10, min_confidence=0.3, media=media, reviews=reviews)
    dets, labs = review.reviewed_tables(media, detections, labels, reviews)
    deployments = table(schemas.DEPLOYMENTS, [{"camera_id": "cam-a", "deployment_id": "cam-a", "latitude": 60.0,
                                               "longitude": 10.0, "start": T0, "end": T0.replace(hour=6), "source": "media"}])
    result = export_camtrap_dp(tmp_path, media=media, detections=dets, species_labels=labs, events=events,
                               deployments=deployments)
    assert validate_camtrap_dp(result.datapackage) == []
    rows = list(csv.DictReader((tmp_path / "observations.csv").open()))
    methods = {(r["observationLevel"], r["scientificName"], r["classificationMethod"]) for r in rows}
    assert methods == {("media", "Capreolus capreolus", "human"), ("media", "Sci red deer", "machine"),
                       ("media", "Vulpes vulpes", "human"), ("event", "Capreolus capreolus", "human"),
                       ("event", "Sci red deer", "machine"), ("event", "Vulpes vulpes", "human")}


def test_sample_for_review_is_seeded_per_camera_with_positives_and_negatives(tmp_path):
    out = Storage(str(tmp_path / "out"))
    s = Shots()
    for minute in range(6):
        s.shot(minute * 30, ("red deer", 0.8))
    for minute in range(6):
        s.shot(400 + minute * 30)
    media, detections, labels = s.tables()
    for name, t in (("media", media), ("detections", detections), ("species_labels", labels)):
        out.write_parquet(schemas.camera_key(name, "cam-a"), t)
    out.write_bytes(labels.column("crop_path")[0].as_py(), b"jpeg")
    drawn = review.sample_for_review(out, Storage(str(tmp_path / "s1")), per_camera=4, seed=7, min_confidence=0.3)
    assert drawn == {"cam-a": {"positives": 2, "negatives": 2}}
    review.sample_for_review(out, Storage(str(tmp_path / "s2")), per_camera=4, seed=7, min_confidence=0.3)
    first, again = ((tmp_path / d / review.SAMPLE_FILE).read_text() for d in ("s1", "s2"))
    assert first == again
    rows = list(csv.DictReader(io.StringIO(first)))
    assert sorted(r["Kind"] for r in rows) == ["negative", "negative", "positive", "positive"]
    assert all(r["RelativePath"] == "cam-a" and r["Species"] == "" for r in rows)
    assert all(r["ModelLabel"] == "red deer" for r in rows if r["Kind"] == "positive")
    # Filled in, the sample goes back in as a Timelapse export.
    for r in rows:
        r["Species"] = "blank" if r["Kind"] == "negative" else "roe deer"
    filled = timelapse_csv(rows, fields=review.SAMPLE_COLUMNS)
    back, unknown = review.read_timelapse(filled, media, labels, source_file=review.SAMPLE_FILE)
    assert unknown == [] and sorted(r["observation_type"] for r in back) == ["animal", "animal", "blank", "blank"]


def test_the_review_sample_calls_positive_what_the_events_and_the_audit_count(tmp_path):
    """A frame with only a person box, or only a suppressed repeat detection, is a negative: the
    detector audit estimates the animals missed from the negatives, so the sample must draw them
    from the same media."""
    out = Storage(str(tmp_path / "out"))
    s = Shots()
    s.shot(0, ("red deer", 0.8))
    s.shot(30, ("human", 0.9, "human"))
    s.shot(60, ("rock", 0.7))  # suppressed below
    s.shot(90)
    media, detections, labels = s.tables()
    rock = next(d for d in detections.to_pylist() if d["label"] == "rock")
    repeats = pa.Table.from_pylist([{
        "camera_id": "cam-a", **{k: rock[k] for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h", "label")}, "detections": 1,
        "triggers": 1, "days": 1, "suppressed": True, "reason": "construction",
        "detection_ids": [rock["detection_id"]]}], schema=schemas.REPEAT_DETECTIONS)
    for name, t in (("media", media), ("detections", detections), ("species_labels", labels), ("repeat_detections", repeats)):
        out.write_parquet(schemas.camera_key(name, "cam-a"), t)
    drawn = review.sample_for_review(out, Storage(str(tmp_path / "s")), per_camera=4, seed=1, min_confidence=0.3)
    assert drawn == {"cam-a": {"positives": 1, "negatives": 3}}
    rows = {r["File"]: r for r in csv.DictReader(io.StringIO((tmp_path / "s" / review.SAMPLE_FILE).read_text()))}
    assert {f: r["Kind"] for f, r in rows.items()} == {"IMG_0000.JPG": "positive", "IMG_0001.JPG": "negative",
                                                      "IMG_0002.JPG": "negative", "IMG_0003.JPG": "negative"}
    assert rows["IMG_0001.JPG"]["ModelLabel"] == "human" and rows["IMG_0002.JPG"]["ModelLabel"] == ""
    # A camera's own events threshold wins: at 0.85 its deer is a negative too.
    drawn = review.sample_for_review(out, Storage(str(tmp_path / "s2")), per_camera=4, seed=1, min_confidence=0.3,
                                     overrides={"cam-a": {"min_confidence": 0.85}})
    assert drawn == {"cam-a": {"positives": 0, "negatives": 4}}
