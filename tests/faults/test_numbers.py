"""The silently wrong numbers of issue 11 (items 1, 2, 3, 5, 7), each pinned to its exact outcome.

Every test here failed before its fix: max_count 2 for one horse and 3 boxes for 2 people (item 1), a
file without EXIF on S3 dated by its upload (item 2), a sideways photo detected in its stored frame
(item 3), 1970 and 2099 reaching events and first_seen (item 5), and 416 px locally against 640 px
in the cloud (item 7).
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from hugin_tables import T0, Shots, table
from media_support import ASSETS
from PIL import ExifTags, Image

from gpu_ops import schemas
from gpu_ops.boxes import iou
from gpu_ops.media import probe_media
from odins_ravne_assets.hugin.clusters import camera_locations, cluster_locations
from odins_ravne_assets.hugin.deployments import apply_clock_offsets, build_deployments, trap_nights
from odins_ravne_assets.hugin.events import condense_events
from odins_ravne_assets.hugin.sites import site_summary

NOW = datetime(2025, 1, 1)


def _events(shots: Shots, *, now=NOW, **kwargs) -> list[dict]:
    media, detections, labels = shots.tables()
    deployments = build_deployments(media, now=now)
    media_fixed = apply_clock_offsets(media, deployments, now=now, **kwargs)
    detections_fixed = apply_clock_offsets(detections, deployments, now=now, media=media, **kwargs)
    return condense_events(labels, detections_fixed, window_minutes=10, min_confidence=0.3, media=media_fixed).to_pylist()


def _boxes(shots: Shots, path: str, boxes: list[tuple[tuple, str]]) -> None:
    """Set the boxes (and sources) of the detections of one shot, in order."""
    mine = [d for d in shots.detections if d["file_path"] == path]
    for det, (box, source) in zip(mine, boxes, strict=True):
        det.update(bbox_x=box[0], bbox_y=box[1], bbox_w=box[2], bbox_h=box[3], source=source)


# ---- item 1: counts come from distinct individuals --------------------------------------------------

def test_a_motion_box_just_outside_the_horse_is_not_a_second_horse():
    # The demo's frame IMG_0005 of cam-north-01: the horse, a box of its body, and a motion-only box
    # just past its rump that smoothing relabelled "horse".
    s = Shots()
    path = s.shot(0, ("horse", 0.92), ("horse", 0.58), ("motion", 0.3))
    _boxes(s, path, [((0.087, 0.526, 0.337, 0.425), "detector+motion"),
                     ((0.177, 0.605, 0.155, 0.295), "detector+motion"),
                     ((0.426, 0.618, 0.031, 0.062), "motion")])
    s.detections[-1]["label"] = "motion"
    s.labels[-1].update(species="animal", scientific_name=None)
    (event,) = [e for e in _events(s) if e["category"] == "animal"]
    assert (event["species"], event["max_count"]) == ("horse", 1)


def test_a_motion_box_counts_where_the_detector_saw_nothing():
    s = Shots()
    path = s.shot(0, ("motion", 0.3))
    _boxes(s, path, [((0.4, 0.6, 0.05, 0.08), "motion")])
    (event,) = _events(s)
    assert (event["species"], event["max_count"]) == ("motion", 1)


def test_two_boxes_on_one_person_count_one_person():
    # The demo's field team (zidane.jpg): one box on the right person, two (IoU 0.41) on the left one.
    s = Shots()
    path = s.shot(0, (None, 0.94, "person"), (None, 0.65, "person"), (None, 0.32, "person"))
    _boxes(s, path, [((0.576, 0.011, 0.336, 0.989), "detector"), ((0.234, 0.271, 0.387, 0.729), "detector"),
                     ((0.074, 0.297, 0.394, 0.698), "detector")])
    (event,) = _events(s)
    assert (event["species"], event["max_count"]) == ("human", 2)


def test_animals_side_by_side_in_a_flock_still_count_apart():
    # Two sheep of the demo's flock overlap a little (IoU 0.14): two animals.
    s = Shots()
    path = s.shot(0, ("sheep", 0.44), ("sheep", 0.43))
    _boxes(s, path, [((0.748, 0.582, 0.029, 0.036), "detector"), ((0.766, 0.569, 0.033, 0.039), "detector")])
    (event,) = _events(s)
    assert event["max_count"] == 2


# ---- item 2: a capture time is only ever a capture time ---------------------------------------------

def _jpeg_without_exif(path, mtime: float):
    Image.new("RGB", (64, 48), (90, 120, 60)).save(path, "JPEG")
    import os

    os.utime(path, (mtime, mtime))
    return path


def test_an_object_store_copy_records_no_capture_time(tmp_path):
    # What munin.ingest does for an S3 object: its LastModified (the upload) must not become the time.
    path = _jpeg_without_exif(tmp_path / "IMG_0001.JPG", datetime(2026, 11, 30).timestamp())
    row = probe_media(path, camera_id="cam-a", file_path="IMG_0001.JPG", file_mtime=False)
    assert (row["status"], row["timestamp"], row["timestamp_source"]) == ("ok", None, "none")


def _camera_and_a_late_file_without_exif() -> Shots:
    """0.55 days of EXIF-timed frames, then a file without EXIF whose file time is 2.5 years on."""
    s = Shots()
    s.shot(0, ("elk", 0.9))
    s.shot(0.55 * 1440, ("elk", 0.9))
    late = s.shot(0.55 * 1440 + 2.5 * 365 * 1440, ("elk", 0.9), file_path="IMG_0099.JPG")
    for row in s.media:
        row["timestamp_source"] = "file_mtime" if row["file_path"] == late else "exif"
    return s


def test_a_file_time_stretches_no_effort_and_dates_no_event():
    s = _camera_and_a_late_file_without_exif()
    media, _, _ = s.tables()
    far_future = datetime(2030, 1, 1)  # the late file is not "in the future": only its source flags it
    deployments = build_deployments(media, now=far_future)
    assert trap_nights(deployments, media) == {"cam-a": pytest.approx(0.55)}
    flagged = apply_clock_offsets(media, deployments, now=far_future)
    assert flagged.column("timestamp_issue").to_pylist() == [None, None, "file_mtime"]
    events = _events(s, now=far_future)
    assert [(e["start"], e["n_media"]) for e in events] == [(T0, 1), (T0 + timedelta(days=0.55), 1), (None, 1)]


def test_a_file_time_counts_when_the_profile_opts_in():
    s = _camera_and_a_late_file_without_exif()
    media, _, _ = s.tables()
    far_future = datetime(2030, 1, 1)
    deployments = build_deployments(media, now=far_future, use_file_mtime=True)
    assert trap_nights(deployments, media, use_file_mtime=True)["cam-a"] == pytest.approx(0.55 + 2.5 * 365)
    assert None not in [e["start"] for e in _events(s, now=far_future, use_file_mtime=True)]


# ---- item 3: pixels in the displayed orientation ----------------------------------------------------

def _sideways(image: Image.Image, orientation: int) -> bytes:
    """The JPEG a camera held sideways writes: pixels stored turned, EXIF saying how to show them."""
    stored = image.transpose(Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=92, exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", [6, 8])
def test_a_sideways_photo_is_detected_and_cropped_as_displayed(orientation):
    from gpu_ops.detector_loader import load_detector
    from gpu_ops.engine import run_detection

    upright = Image.open(ASSETS / "zidane.jpg").convert("RGB")
    buffer = io.BytesIO()
    upright.save(buffer, "JPEG", quality=92)
    detector = load_detector("default", device="cpu", conf_threshold=0.25)
    found = {}
    run_detection([("upright", buffer.getvalue()), ("sideways", _sideways(upright, orientation))], detector,
                  crop_min_conf=0.5, on_result=lambda key, dets, crops: found.__setitem__(key, (dets, crops)))
    (want, want_crops), (got, got_crops) = found["upright"], found["sideways"]
    people = [d for d in want if d.category == "person"]
    assert len(people) >= 2
    for person in people:
        assert max(iou(person.bbox, d.bbox) for d in got if d.category == "person") > 0.9
    # Crops are cut from the displayed frame: the same windows (to a pixel of box rounding), so the same sizes.
    got_sizes = sorted(Image.open(io.BytesIO(c)).size for c in got_crops.values())
    want_sizes = sorted(Image.open(io.BytesIO(c)).size for c in want_crops.values())
    assert len(got_sizes) == len(want_sizes) >= 2
    assert np.abs(np.array(got_sizes) - np.array(want_sizes)).max() <= 2, (got_sizes, want_sizes)


# ---- item 5: implausible times are flagged and kept out of events and sites -------------------------

def test_1970_and_2099_never_become_a_start_or_first_seen():
    s = Shots()
    reset = datetime(1970, 1, 1, 0, 0, 0)
    for i, stamp in enumerate([reset, reset + timedelta(seconds=2), reset + timedelta(seconds=4)]):
        s.shot(0, ("lynx", 0.9), lat=61.0, lon=10.0)
        s.media[-1]["timestamp"] = s.detections[-1]["timestamp"] = stamp
    s.shot(0, ("lynx", 0.9), lat=61.0, lon=10.0)
    s.shot(0, ("elk", 0.9), lat=61.0, lon=10.0)
    s.media[-1]["timestamp"] = s.detections[-1]["timestamp"] = datetime(2099, 6, 1)
    media, _, _ = s.tables()
    flagged = apply_clock_offsets(media, build_deployments(media, now=NOW), now=NOW)
    assert flagged.column("timestamp_issue").to_pylist() == ["before_2000"] * 3 + [None, "in_future"]
    events = _events(s)
    # The reset clock still counts seconds: its three frames are one visit, without a date.
    assert sorted((e["species"], e["start"], e["n_media"]) for e in events if e["start"] is None) == \
        [("elk", None, 1), ("lynx", None, 3)]
    assert [(e["species"], e["start"]) for e in events if e["start"] is not None] == [("lynx", T0)]
    clusters = cluster_locations(camera_locations(media)).table
    sites, species = site_summary(pa.Table.from_pylist(events, schema=schemas.EVENTS), clusters,
                                  trap_nights(build_deployments(media, now=NOW), media))
    (site,) = sites.to_pylist()
    assert (site["first_seen"], site["last_seen"], site["n_animal_events"]) == (T0, T0, 3)


def test_sites_ignore_a_1970_start_in_an_older_events_table():
    events = table(schemas.EVENTS, [
        {"camera_id": "cam-a", "event_id": "e1", "category": "animal", "species": "lynx", "max_count": 1,
         "start": datetime(1970, 1, 1)},
        {"camera_id": "cam-a", "event_id": "e2", "category": "animal", "species": "lynx", "max_count": 1, "start": T0},
    ])
    clusters = table(schemas.CLUSTERS, [{"camera_id": "cam-a", "site_id": "site-01", "status": "no_gps"}])
    sites, _ = site_summary(events, clusters, {"cam-a": 1.0})
    assert sites.column("first_seen").to_pylist() == [T0]


# ---- item 7: the same photo, the same answer, wherever it runs --------------------------------------

def test_every_shipped_profile_counts_the_same_way():
    from resources.profiles import PROFILE_DIR, load_profile

    def science(name):
        p = load_profile(name).pipeline
        s1 = p.stage1
        return (s1.model, s1.image_size, s1.confidence_threshold, s1.iou_threshold, s1.video_every_seconds,
                s1.video_max_frames, p.bursts, p.crops, p.stage2.classifier, p.stage2.image_size,
                p.events.compression_window, p.events.min_confidence, p.events.use_file_mtime)

    names = sorted(path.stem for path in PROFILE_DIR.glob("*.yaml"))
    assert len(names) >= 3
    first = science(names[0])
    assert all(science(name) == first for name in names), {name: science(name) for name in names}


def test_the_default_model_runs_at_its_own_input_size():
    from gpu_ops.detector_loader import load_detector

    assert load_detector("default", device="cpu").image_size == 416
    assert load_detector("default", device="cpu", image_size=640).image_size == 640  # chosen on purpose
