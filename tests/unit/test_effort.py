"""Camera effort (hugin.effort) on cameras whose outages are known by construction: a silence longer
than the threshold, one confirmed and one overridden in camera_operation.csv, a threshold per
deployment, and times that count for nothing (file times, a reset clock); the Stage 3 view agrees."""

from collections import Counter
from datetime import date, datetime

import duckdb
import pyarrow as pa
import pytest
from hugin_tables import Shots

from gpu_ops import schemas
from odins_ravne_assets.hugin.deployments import DeploymentsError, build_deployments, read_deployments_csv, trap_nights
from odins_ravne_assets.hugin.effort import camera_operation, outage_days, read_camera_operation_csv
from odins_ravne_assets.hugin.stage3_views import extra_view_statements

NOW = datetime(2025, 1, 1)
# cam-a stands 2024-06-01 00:00 to 06-25 12:00 and photographs at 14:00 on days 0-2 and 20-21: silent
# from 06-03 14:00 to 06-21 14:00 (18 days), the card full or the battery flat.
DEPLOYMENT = b"camera_id,start,end\ncam-a,2024-06-01T00:00:00,2024-06-25T12:00:00\n"
PHOTO_DAYS = (0, 1, 2, 20, 21)


def silent_camera(extra=()) -> pa.Table:
    shots = Shots("cam-a")
    for day in PHOTO_DAYS:
        shots.shot(day * 1440 + 600)
    for minutes in extra:
        shots.shot(minutes)
    return shots.tables()[0]


def operation(media, *, csv=DEPLOYMENT, overrides=(), max_silence_days=7.0, **kwargs):
    deployments = build_deployments(media, read_deployments_csv(csv), now=NOW)
    table = camera_operation(deployments, media, max_silence_days=max_silence_days, overrides=list(overrides),
                             now=NOW, **kwargs)
    return deployments, table


def by_day(table: pa.Table) -> dict[date, dict]:
    return {r["date"]: r for r in table.to_pylist()}


def test_a_long_silence_is_a_suspected_outage_and_no_effort():
    media = silent_camera()
    deployments, table = operation(media)
    assert table.schema == schemas.CAMERA_OPERATION
    days = by_day(table)
    assert list(days) == [date(2024, 6, d) for d in range(1, 26)]
    assert [d for d, r in days.items() if not r["operating"]] == [date(2024, 6, d) for d in range(4, 21)]
    assert Counter(r["source"] for r in days.values()) == {"media": 8, "suspected_outage": 17}
    assert days[date(2024, 6, 10)]["note"] == "silent 18.0 days from 2024-06-03 14:00 to 2024-06-21 14:00"
    # 24.5 days deployed less the 18-day silence; the half days at either end of it count
    assert days[date(2024, 6, 3)]["effort_days"] == pytest.approx(14 / 24)
    assert trap_nights(deployments, media, operation=table) == {"cam-a": pytest.approx(6.5)}
    assert trap_nights(deployments, media) == {"cam-a": pytest.approx(24.5)}  # without it: start to end
    assert outage_days(table) == {"suspected_outage": 17}


def test_a_silence_at_the_end_is_the_dead_battery():
    media = silent_camera()
    deployments, table = operation(media, csv=b"camera_id,start,end\ncam-a,2024-06-01T00:00:00,2024-07-20T00:00:00\n",
                                   max_silence_days=20)
    # the last photo is 06-22 14:00; 27.4 silent days to take-down; the 18-day gap is under 20
    assert trap_nights(deployments, media, operation=table)["cam-a"] == pytest.approx(21 + 14 / 24)
    assert by_day(table)[date(2024, 7, 19)]["source"] == "suspected_outage"


def test_no_threshold_no_outage():
    media = silent_camera()
    deployments, table = operation(media, max_silence_days=None)
    assert set(table.column("source").to_pylist()) == {"media"}
    assert trap_nights(deployments, media, operation=table) == trap_nights(deployments, media) == {"cam-a": 24.5}


def test_a_deployment_sets_its_own_threshold():
    media = silent_camera()
    # a camera on a quiet trail: 30 days of silence are still a working camera
    _, table = operation(media, csv=b"camera_id,start,end,max_silence_days\ncam-a,2024-06-01T00:00:00,2024-06-25T12:00:00,30\n")
    assert all(table.column("operating").to_pylist())


def test_camera_operation_csv_confirms_and_overrides():
    media = silent_camera()
    overrides = read_camera_operation_csv(
        b"camera_id,start,end,operating,note\n"
        b"cam-a,2024-06-10,2024-06-20,true,quiet: checked on the 15th\n"  # whole days: 06-10 00:00 to 06-21 00:00
        b"cam-a,2024-06-23T06:00:00,2024-06-24T18:00:00,false,knocked over\n")
    deployments, table = operation(media, overrides=overrides)
    days = by_day(table)
    assert [d.day for d, r in days.items() if not r["operating"]] == [4, 5, 6, 7, 8, 9]
    assert days[date(2024, 6, 15)]["source"] == "camera_operation.csv"
    assert days[date(2024, 6, 15)]["note"] == "quiet: checked on the 15th"
    assert [days[date(2024, 6, d)]["effort_days"] for d in (23, 24)] == [pytest.approx(0.25), pytest.approx(0.25)]
    assert (days[date(2024, 6, 24)]["source"], days[date(2024, 6, 24)]["note"]) == ("camera_operation.csv", "knocked over")
    # the CSV decides only within its rows: the silence is still suspected from 06-03 14:00 to 06-10 00:00
    # (6 days 10 h) and from 06-21 00:00 to its photo at 14:00; 06-23 06:00 to 06-24 18:00 is confirmed
    assert days[date(2024, 6, 21)]["effort_days"] == pytest.approx(10 / 24)
    assert trap_nights(deployments, media, operation=table)["cam-a"] == pytest.approx(24.5 - (6 + 10 / 24) - 14 / 24 - 1.5)


def test_a_knocked_over_camera_still_taking_pictures_is_not_operating():
    media = silent_camera(extra=[22 * 1440 + 60])  # a photo of the sky on 06-23 05:00
    overrides = read_camera_operation_csv(b"camera_id,start,end,operating\ncam-a,2024-06-23,2024-06-23,no\n")
    _, table = operation(media, overrides=overrides, max_silence_days=None)
    assert by_day(table)[date(2024, 6, 23)]["operating"] is False


def test_times_that_are_no_capture_time_do_not_break_a_silence():
    media = silent_camera(extra=[10 * 1440, -24 * 60 * 365 * 30])  # a file time on 06-11, and 1994
    rows = media.to_pylist()
    rows[len(PHOTO_DAYS)]["timestamp_source"] = "file_mtime"
    media = pa.Table.from_pylist(rows, schema=schemas.MEDIA)
    deployments, table = operation(media, max_silence_days=8)
    assert trap_nights(deployments, media, operation=table)["cam-a"] == pytest.approx(6.5)  # one 18-day silence
    # opted in, the file time (06-11 04:00) is a capture time: silences of 7 d 14 h (under 8) and 10 d 10 h
    _, opted = operation(media, use_file_mtime=True, max_silence_days=8)
    assert by_day(opted)[date(2024, 6, 11)]["operating"] is True
    assert trap_nights(deployments, media, operation=opted)["cam-a"] == pytest.approx(24.5 - 10 - 10 / 24)


def test_days_between_two_deployments_are_not_deployed():
    shots = Shots("cam-a")
    for day in (0, 1, 2, 8, 9):
        shots.shot(day * 1440)
    media = shots.tables()[0]
    csv = (b"camera_id,deployment_id,start,end\ncam-a,first,2024-06-01T00:00:00,2024-06-04T00:00:00\n"
           b"cam-a,second,2024-06-08T00:00:00,2024-06-11T00:00:00\n")
    deployments, table = operation(media, csv=csv)
    days = by_day(table)
    assert [(d.day, r["deployment_id"], r["source"]) for d, r in days.items() if not r["operating"]] == [
        (4, None, "not_deployed"), (5, None, "not_deployed"), (6, None, "not_deployed"), (7, None, "not_deployed")]
    assert trap_nights(deployments, media, operation=table) == {"cam-a": 6.0}


@pytest.mark.parametrize("text, message", [
    (b"camera_id,start,end\ncam-a,2024-06-01,2024-06-02\n", "no operating column"),
    (b"camera_id,start,end,operating\ncam-a,2024-06-01,,true\n", "give both start and end"),
    (b"camera_id,start,end,operating\ncam-a,2024-06-01,2024-06-02,maybe\n", "operating 'maybe' is not true or false"),
    (b"camera_id,start,end,operating\ncam-a,2024-06-05,2024-06-02,false\n", "end 2024-06-02 is before start"),
])
def test_bad_camera_operation_rows_name_the_line_and_the_fix(text, message):
    with pytest.raises(DeploymentsError, match=message):
        read_camera_operation_csv(text)


def test_the_stage3_sites_count_the_operating_days(tmp_path):
    import pyarrow.parquet as pq

    from odins_ravne_assets.hugin.clusters import camera_locations, cluster_locations

    a = Shots("cam-a")
    for day in PHOTO_DAYS:
        a.shot(day * 1440 + 600, ("elk", 0.9), lat=62.0, lon=10.0)
    media, detections, labels = a.tables()
    deployments, table = operation(media)
    clusters = cluster_locations(camera_locations(media)).table
    pq.write_table(deployments, tmp_path / "deployments.parquet")
    pq.write_table(table, tmp_path / "camera_operation.parquet")
    con = duckdb.connect()
    for name, t in (("media", media), ("detections", detections), ("species_labels", labels),
                    ("events", schemas.EVENTS.empty_table()), ("clusters", clusters),
                    ("repeat_detections", schemas.REPEAT_DETECTIONS.empty_table())):
        con.register(f"{name}_arrow", t)
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_arrow")
    for sql in extra_view_statements(deployments_parquet=str(tmp_path / "deployments.parquet"),
                                     camera_operation_parquet=str(tmp_path / "camera_operation.parquet")):
        con.execute(sql)
    assert con.execute("SELECT trap_nights FROM sites").fetchall() == [(pytest.approx(6.5),)]
    assert con.execute("SELECT count(*) FROM camera_operation WHERE NOT operating").fetchone() == (17,)
