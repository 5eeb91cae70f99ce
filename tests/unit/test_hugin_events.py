from datetime import timedelta

import pyarrow as pa
import pytest
from hugin_tables import T0, Shots, table

from gpu_ops import schemas
from odins_ravne_assets.hugin.events import condense_events, settings_for_camera


def events_of(shots: Shots, **kwargs) -> list[dict]:
    media, detections, labels = shots.tables()
    kwargs.setdefault("window_minutes", 10)
    kwargs.setdefault("min_confidence", 0.3)
    out = condense_events(labels, detections, **kwargs)
    assert out.schema == schemas.EVENTS
    return out.to_pylist()


def test_window_splits_visits_and_counts_the_largest_simultaneous_group():
    s = Shots()
    s.shot(0, ("elk", 0.8))
    s.shot(1, ("elk", 0.9), ("elk", 0.7), ("elk", 0.6))  # three elk in one frame
    s.shot(2, ("elk", 0.5), ("elk", 0.5))
    s.shot(30, ("elk", 0.95))  # 28 minutes later: a new visit
    first, second = events_of(s)
    assert (first["species"], first["n_media"], first["max_count"]) == ("elk", 3, 3)
    assert first["start"] == T0 and first["end"] == T0 + timedelta(minutes=2)
    assert first["best_conf"] == pytest.approx(0.9)
    assert first["representative_file_path"] == "IMG_0001.JPG"
    assert first["representative_crop_path"].endswith(f"{first['representative_detection_id']}.jpg")
    assert first["scientific_name"] == "Sci elk"
    assert (second["start"], second["n_media"], second["max_count"]) == (T0 + timedelta(minutes=30), 1, 1)


def test_gap_equal_to_window_stays_one_event():
    s = Shots()
    s.shot(0, ("fox", 0.8))
    s.shot(10, ("fox", 0.8))
    s.shot(20.5, ("fox", 0.8))
    assert [e["n_media"] for e in events_of(s)] == [2, 1]


def test_min_confidence_compares_in_float32():
    s = Shots()
    s.shot(0, ("fox", 0.7))  # stored as float32 0.69999999
    s.shot(1, ("badger", 0.69))
    (only,) = events_of(s, min_confidence=0.7)
    assert only["species"] == "fox"


def test_one_deer_in_a_burst_of_elk_is_an_elk_event():
    s = Shots()
    for minute in range(5):
        s.shot(minute, ("elk", 0.9), ("elk", 0.85))
    s.shot(2.5, ("deer", 0.6), ("elk", 0.8))
    (event,) = events_of(s)
    assert event["species"] == "elk" and event["n_media"] == 6
    # The relabelled deer stands beside an elk: two elk in that frame, as in the others.
    assert event["max_count"] == 2

    unsmoothed = events_of(s, label_smoothing=None)
    assert sorted(e["species"] for e in unsmoothed) == ["deer", "elk"]


def test_smoothing_weighs_by_confidence_not_by_count():
    s = Shots()
    s.shot(0, ("elk", 0.95))
    s.shot(1, ("elk", 0.95))
    s.shot(2, ("deer", 0.35))
    s.shot(3, ("deer", 0.35))
    # deer: 2 of 4 detections but 0.63 / 2.34 of the weighted votes (27%) -> a real second species
    assert sorted(e["species"] for e in events_of(s)) == ["deer", "elk"]
    # a tighter share relabels it
    assert [e["species"] for e in events_of(s, label_smoothing=0.3)] == ["elk"]


def test_a_real_mixed_visit_keeps_both_species():
    s = Shots()
    for minute in range(3):
        s.shot(minute, ("fox", 0.8))
        s.shot(minute + 0.5, ("badger", 0.8))
    assert sorted((e["species"], e["n_media"]) for e in events_of(s)) == [("badger", 3), ("fox", 3)]


def test_people_vehicles_and_blanks_are_kept_apart_from_animals():
    s = Shots()
    s.shot(0, ("fox", 0.9))
    s.shot(1, ("person", 0.8, "person"))
    s.shot(2, ("car", 0.8, "vehicle"), ("fox", 0.7))
    s.shot(3)  # empty frame right after the visit: part of it, not a blank event
    s.shot(60)  # a false trigger an hour later
    s.shot(61)
    s.shot(200, status="failed")  # unreadable: not known to be blank
    media, detections, labels = s.tables()
    out = condense_events(labels, detections, window_minutes=10, min_confidence=0.3, media=media).to_pylist()
    by_category = {e["category"]: e for e in out}
    assert sorted(by_category) == ["animal", "blank", "person", "vehicle"]
    assert by_category["animal"]["n_media"] == 2
    assert (by_category["person"]["species"], by_category["person"]["scientific_name"]) == ("human", "Homo sapiens")
    assert by_category["vehicle"]["species"] == "vehicle"
    blank = by_category["blank"]
    assert (blank["n_media"], blank["max_count"], blank["species"]) == (2, 0, None)
    assert blank["start"] == T0 + timedelta(minutes=60)


def test_untimed_media_are_events_of_their_own():
    s = Shots()
    s.shot(None, ("fox", 0.9), ("fox", 0.8))
    s.shot(None, ("fox", 0.9))
    s.shot(0, ("fox", 0.9))
    out = events_of(s)
    assert [e["start"] is None for e in out] == [False, True, True]
    assert sorted(e["max_count"] for e in out if e["start"] is None) == [1, 2]
    assert len({e["event_id"] for e in out}) == 3


def test_per_camera_overrides_apply_to_their_camera_only():
    a, b = Shots("cam-a"), Shots("cam-b")
    for s in (a, b):
        s.shot(0, ("fox", 0.5))
        s.shot(5, ("fox", 0.5))
    tables = [x.tables() for x in (a, b)]
    detections = pa.concat_tables([t[1] for t in tables])
    labels = pa.concat_tables([t[2] for t in tables])
    out = condense_events(labels, detections, window_minutes=10, min_confidence=0.3,
                          per_camera={"cam-b": {"compression_window": 2}}).to_pylist()
    assert [(e["camera_id"], e["n_media"]) for e in out] == [("cam-a", 2), ("cam-b", 1), ("cam-b", 1)]
    assert settings_for_camera("cam-b", window_minutes=10, min_confidence=0.3,
                               per_camera={"cam-b": {"min_confidence": 0.6}}) == (10.0, 0.6)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['window'\]"):
        settings_for_camera("cam-b", window_minutes=10, min_confidence=0.3, per_camera={"cam-b": {"window": 2}})


def test_event_ids_are_stable_whatever_the_row_order():
    s = Shots()
    for minute in (0, 1, 2, 40, 41):
        s.shot(minute, ("elk", 0.5 + minute / 100), ("wolf", 0.6))
    media, detections, labels = s.tables()
    once = condense_events(labels, detections, window_minutes=10, min_confidence=0.3)
    reversed_rows = condense_events(labels.take(list(range(labels.num_rows))[::-1]),
                                    detections.take(list(range(detections.num_rows))[::-1]),
                                    window_minutes=10, min_confidence=0.3)
    assert once.equals(reversed_rows)
    assert once.num_rows == 4 and len(set(once["event_id"].to_pylist())) == 4
    assert all(i.startswith("cam-a-20240601T04") for i in once["event_id"].to_pylist())


def test_detections_without_species_label_keep_the_detector_label():
    s = Shots()
    s.shot(0, ("dog", 0.8))
    media, detections, _ = s.tables()
    (event,) = condense_events(schemas.empty(schemas.SPECIES_LABELS), detections,
                               window_minutes=10, min_confidence=0.3).to_pylist()
    assert (event["species"], event["scientific_name"], event["representative_crop_path"]) == ("dog", None, None)


def test_empty_inputs_give_an_empty_events_table():
    out = condense_events(schemas.empty(schemas.SPECIES_LABELS), schemas.empty(schemas.DETECTIONS),
                          window_minutes=10, min_confidence=0.3, media=schemas.empty(schemas.MEDIA))
    assert out.num_rows == 0 and out.schema == schemas.EVENTS


def test_bad_settings_say_what_to_use():
    empty = schemas.empty(schemas.DETECTIONS)
    with pytest.raises(ValueError, match="min_confidence .* use a value in"):
        condense_events(schemas.empty(schemas.SPECIES_LABELS), empty, window_minutes=10, min_confidence=3)
    with pytest.raises(ValueError, match="label_smoothing"):
        condense_events(schemas.empty(schemas.SPECIES_LABELS), empty, window_minutes=10,
                        min_confidence=0.3, label_smoothing=0.7)
    with pytest.raises(ValueError, match="detections table lacks"):
        condense_events(schemas.empty(schemas.SPECIES_LABELS), table(schemas.EVENTS, []),
                        window_minutes=10, min_confidence=0.3)


def test_a_box_nested_in_a_larger_box_of_the_same_species_is_not_a_second_animal():
    from odins_ravne_assets.hugin.events import _individuals

    whole, head, neighbour = (0.1, 0.5, 0.3, 0.4), (0.15, 0.55, 0.08, 0.1), (0.6, 0.5, 0.3, 0.4)
    assert _individuals([whole, head]) == 1
    assert _individuals([whole, head, neighbour]) == 2
    assert _individuals([whole, None]) == 2  # without a box nothing can be merged
