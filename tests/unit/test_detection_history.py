"""Detection histories (hugin.detection_history) against a matrix worked out by hand, and the Stage 3
macro detection_history(...) giving the same cells."""

from datetime import date, datetime, timedelta

import duckdb
import pyarrow as pa
import pytest

from gpu_ops import schemas
from hugin_tables import table
from odins_ravne_assets.hugin.detection_history import detection_history, history_rows, write_detection_history_csv
from odins_ravne_assets.hugin.stage3_views import MACROS

NOW = datetime(2025, 1, 1)


def days(camera: str, first: date, n: int, down: tuple[int, ...] = ()) -> list[dict]:
    return [{"camera_id": camera, "date": first + timedelta(days=i), "operating": i not in down,
             "effort_days": 0.0 if i in down else 1.0, "source": "suspected_outage" if i in down else "media"}
            for i in range(n)]


def survey():
    """Site A: cam-1 from 06-01 for 10 days, down on days 3-5; cam-2 from 06-04 for 3 days (covers day 3
    only of cam-1's outage). Site B: cam-3 from 06-05 for 5 days, down on days 0-1. cam-4 has no site."""
    operation = table(schemas.CAMERA_OPERATION, days("cam-1", date(2024, 6, 1), 10, down=(3, 4, 5))
                      + days("cam-2", date(2024, 6, 4), 1) + days("cam-3", date(2024, 6, 5), 5, down=(0, 1))
                      + days("cam-4", date(2024, 6, 2), 2))
    clusters = table(schemas.CLUSTERS, [{"camera_id": c, "site_id": s} for c, s in
                                        (("cam-1", "A"), ("cam-2", "A"), ("cam-3", "B"))])

    def event(camera, day, hour=12, species="red deer", category="animal"):
        return {"camera_id": camera, "event_id": f"{camera}-{day}-{hour}", "category": category, "species": species,
                "scientific_name": "Cervus elaphus" if species == "red deer" else None,
                "start": datetime(2024, 6, day, hour)}
    events = table(schemas.EVENTS, [
        event("cam-1", 2), event("cam-1", 2, 18),  # two events in one occasion: still 1
        event("cam-2", 4),  # cam-2 works on 06-04 while cam-1 is down: the site detects
        event("cam-1", 5),  # cam-1 down on 06-05 and so is the site: not counted
        event("cam-1", 9, species="lynx"),
        event("cam-3", 6),  # cam-3 is down on 06-06: not counted
        event("cam-3", 8),
        event("cam-4", 3, category="person", species="human"),
    ])
    return operation, events, clusters


# Occasions of 3 days from each station's own first day. A: 06-01..03, 04..06, 07..09, 10;
# B: 06-05..07, 08..09; cam-4: 06-02..03.
BY_SITE = {"A": [1, 1, 0, 0], "B": [0, 1, None, None], "cam-4": [0, None, None, None]}


def test_the_detection_history_matches_the_hand_worked_matrix():
    operation, events, clusters = survey()
    history = detection_history(operation, events, clusters, species="Red Deer", occasion_days=3, now=NOW)
    assert history.column_names == ["station", "o1", "o2", "o3", "o4"]
    assert {r.pop("station"): list(r.values()) for r in history.to_pylist()} == BY_SITE
    # by scientific name, the same
    assert detection_history(operation, events, clusters, species="cervus elaphus", occasion_days=3).equals(history)


def test_cameras_as_stations_and_an_outage_makes_na():
    operation, events, clusters = survey()
    history = detection_history(operation, events, clusters, species="red deer", occasion_days=3, by="camera", now=NOW)
    # cam-1 alone: 06-04..06 all down: NA (the site above had cam-2 that day)
    assert {r.pop("station"): list(r.values()) for r in history.to_pylist()} == {
        "cam-1": [1, None, 0, 0], "cam-2": [1, None, None, None], "cam-3": [0, 1, None, None],
        "cam-4": [0, None, None, None]}


def test_occasions_of_one_day_and_the_csv_writes_na(tmp_path):
    operation, events, clusters = survey()
    history = detection_history(operation, events, clusters, species="red deer", occasion_days=1, now=NOW)
    a = next(r for r in history.to_pylist() if r["station"] == "A")
    assert [a[f"o{k}"] for k in range(1, 11)] == [0, 1, 0, 1, None, None, 0, 0, 0, 0]
    path = write_detection_history_csv(detection_history(operation, events, clusters, species="red deer",
                                                         occasion_days=3, now=NOW), tmp_path / "deer.csv")
    assert path.read_text().splitlines() == ["station,o1,o2,o3,o4", "A,1,1,0,0", "B,0,1,NA,NA", "cam-4,0,NA,NA,NA"]


def test_bad_occasions_are_refused():
    operation, events, clusters = survey()
    with pytest.raises(ValueError, match="an occasion is 1 day or more"):
        detection_history(operation, events, clusters, species="red deer", occasion_days=0)


@pytest.mark.parametrize("station_by, occasion_days", [("site", 3), ("camera", 3), ("site", 1), ("site", 30)])
def test_the_stage3_macro_gives_the_same_cells(station_by, occasion_days):
    operation, events, clusters = survey()
    con = duckdb.connect()
    for name, t in (("camera_operation", operation), ("events", events), ("clusters", clusters)):
        con.register(f"{name}_arrow", t)
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_arrow")
    for signature, body in MACROS.items():
        con.execute(f"CREATE MACRO {signature} AS TABLE {body}")
    got = con.execute(f"SELECT station, occasion, days_operating, detected "
                      f"FROM detection_history('red deer', {occasion_days}, station_by := '{station_by}')").fetchall()
    want = history_rows(operation, events, clusters, species="red deer", occasion_days=occasion_days, by=station_by)
    assert got == [(r["station"], r["occasion"], r["days_operating"], r["detected"]) for r in want]
