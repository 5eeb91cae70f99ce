"""Camera clocks put right (hugin.deployments, "Clocks"): a known linear drift, daylight saving in a time
zone for a camera that keeps its clock and one that changes it, and ambiguous day/month dates; each
flagged where applied, and the Stage 3 views correct times as the Python does."""

from datetime import datetime, timedelta

import duckdb
import pyarrow as pa
import pytest
from hugin_tables import Shots

from gpu_ops import schemas
from odins_ravne_assets.hugin.deployments import (
    DeploymentsError,
    apply_clock_offsets,
    build_deployments,
    read_deployments_csv,
    timestamp_correction_counts,
)
from odins_ravne_assets.hugin.stage3_views import extra_view_statements

NOW = datetime(2025, 1, 1)


def camera_at(*times: datetime, camera: str = "cam-a") -> pa.Table:
    shots = Shots(camera)
    for t in times:
        shots.shot((t - datetime(2024, 6, 1, 4)).total_seconds() / 60)
    return shots.tables()[0]


def corrected(media: pa.Table, csv: bytes) -> list[dict]:
    deployments = build_deployments(media, read_deployments_csv(csv), now=NOW)
    return apply_clock_offsets(media, deployments, now=NOW).to_pylist()


def test_a_known_linear_drift_is_interpolated_by_the_cameras_own_time():
    # 60 s slow at setup, 660 s slow at take-down: the clock lost 600 s over the deployment.
    start, end = datetime(2024, 6, 1), datetime(2024, 6, 11)
    camera_start, camera_end = start - timedelta(seconds=60), end - timedelta(seconds=660)
    middle = camera_start + (camera_end - camera_start) / 2
    media = camera_at(camera_start, middle, camera_end)
    rows = corrected(media, b"camera_id,start,end,clock_offset_s,clock_offset_end_s\n"
                            b"cam-a,2024-06-01T00:00:00,2024-06-11T00:00:00,60,660\n")
    assert [r["timestamp"] for r in rows] == [start, middle + timedelta(seconds=360), end]
    assert {r["timestamp_correction"] for r in rows} == {"clock_offset+clock_drift"}
    assert [r["timestamp_issue"] for r in rows] == [None, None, None]
    assert timestamp_correction_counts(apply_clock_offsets(media, build_deployments(media, read_deployments_csv(
        b"camera_id,start,end,clock_offset_s,clock_offset_end_s\ncam-a,2024-06-01T00:00:00,2024-06-11T00:00:00,60,660\n"),
        now=NOW), now=NOW)) == {"clock_offset": 3, "clock_drift": 3}


def test_without_an_end_reading_the_offset_stays_constant():
    media = camera_at(datetime(2024, 6, 5, 12))
    (row,) = corrected(media, b"camera_id,start,end,clock_offset_s\ncam-a,2024-06-01T00:00:00,2024-06-11T00:00:00,60\n")
    assert row["timestamp"] == datetime(2024, 6, 5, 12, 1) and row["timestamp_correction"] == "clock_offset"


# Oslo: CET (+01:00) until 2024-03-31 02:00, then CEST (+02:00).
OSLO = b"camera_id,start,end,timezone,clock_follows_dst\ncam-a,2024-03-01T12:00:00,2024-05-01T12:00:00,Europe/Oslo,"


def test_a_camera_that_keeps_its_winter_clock_gains_the_summer_hour():
    media = camera_at(datetime(2024, 3, 15, 12), datetime(2024, 4, 15, 12))
    march, april = corrected(media, OSLO + b"\n")
    assert (march["timestamp"], march["timestamp_correction"]) == (datetime(2024, 3, 15, 12), None)
    assert (april["timestamp"], april["timestamp_correction"]) == (datetime(2024, 4, 15, 13), "dst")


def test_a_camera_that_changes_its_clock_is_left_as_it_is():
    media = camera_at(datetime(2024, 3, 15, 12), datetime(2024, 4, 15, 12))
    rows = corrected(media, OSLO + b"true\n")
    assert [(r["timestamp"], r["timestamp_correction"]) for r in rows] == [
        (datetime(2024, 3, 15, 12), None), (datetime(2024, 4, 15, 12), None)]


def test_a_take_down_reading_in_summer_time_is_not_drift():
    # Read against a phone on 1 May the winter clock is an hour behind: that hour is daylight saving.
    media = camera_at(datetime(2024, 4, 15, 12))
    (row,) = corrected(media, b"camera_id,start,end,timezone,clock_offset_end_s\n"
                              b"cam-a,2024-03-01T12:00:00,2024-05-01T12:00:00,Europe/Oslo,3600\n")
    assert (row["timestamp"], row["timestamp_correction"]) == (datetime(2024, 4, 15, 13), "dst")


def test_a_camera_set_in_summer_keeps_summer_time_into_the_winter():
    media = camera_at(datetime(2024, 11, 15, 12))
    (row,) = corrected(media, b"camera_id,start,end,timezone\ncam-a,2024-09-01T12:00:00,2024-12-01T12:00:00,Europe/Oslo\n")
    assert (row["timestamp"], row["timestamp_correction"]) == (datetime(2024, 11, 15, 11), "dst")


def test_a_fixed_offset_zone_has_no_daylight_saving():
    media = camera_at(datetime(2024, 4, 15, 12))
    (row,) = corrected(media, b"camera_id,start,end,timezone\ncam-a,2024-03-01T12:00:00,2024-05-01T12:00:00,+01:00\n")
    assert (row["timestamp"], row["timestamp_correction"]) == (datetime(2024, 4, 15, 12), None)


def test_the_file_decides_the_day_and_month_order():
    (a, b) = read_deployments_csv(b"camera_id,start,end\na,03/04/2024,25/04/2024\nb,05/06/2024 08:30,06/06/2024\n").to_pylist()
    assert (a["start"], a["end"], b["start"]) == (datetime(2024, 4, 3), datetime(2024, 4, 25), datetime(2024, 6, 5, 8, 30))
    assert a["date_issue"] is None and b["date_issue"] is None
    (c,) = read_deployments_csv(b"camera_id,start,end\nc,04/13/2024,05/01/2024\n").to_pylist()
    assert (c["start"], c["end"]) == (datetime(2024, 4, 13), datetime(2024, 5, 1))


def test_an_ambiguous_date_is_read_day_first_and_flagged():
    (a, b) = read_deployments_csv(b"camera_id,start,end\na,03/04/2024,05/06/2024\nb,2024-06-01,07/07/2024\n").to_pylist()
    assert (a["start"], a["end"], a["date_issue"]) == (datetime(2024, 4, 3), datetime(2024, 6, 5), "ambiguous_date")
    assert b["date_issue"] is None  # 07/07 reads the same either way


def test_a_declared_date_format_decides():
    (a,) = read_deployments_csv(b"camera_id,start,end\na,03/04/2024,05/06/2024\n", date_format="month_first").to_pylist()
    assert (a["start"], a["end"], a["date_issue"]) == (datetime(2024, 3, 4), datetime(2024, 5, 6), None)
    (e,) = read_deployments_csv(b"camera_id,start,end\ne,2024:06:01 12:00:00,2024-06-03T00:00:00\n").to_pylist()
    assert e["start"] == datetime(2024, 6, 1, 12)  # EXIF style is year first: never ambiguous


@pytest.mark.parametrize("text, date_format, message", [
    (b"camera_id,start,end\na,25/04/2024,04/26/2024\n", "auto", "'25/04/2024' is day first but '04/26/2024' is month first"),
    (b"camera_id,start\na,04/26/2024\n", "day_first", "'04/26/2024' cannot be read day first"),
    (b"camera_id,start\na,31/02/2024\n", "auto", "start '31/02/2024' is not an ISO 8601 time"),
])
def test_dates_that_cannot_be_right_are_refused_in_one_line(text, date_format, message):
    with pytest.raises(DeploymentsError, match=message):
        read_deployments_csv(text, date_format=date_format)


def test_stage3_times_equal_the_python_correction(tmp_path):
    """The views media_times / detection_times correct as apply_clock_offsets does: drift, daylight
    saving, a camera with two deployments, a camera with none."""
    import pyarrow.parquet as pq

    a, b, c = Shots("cam-a"), Shots("cam-b"), Shots("cam-c")
    for day in (-80, -60, -45, -20, -3, 20, 40):  # around T0 = 2024-06-01 04:00
        a.shot(day * 1440 + 333, ("elk", 0.9))
        b.shot(day * 1440 + 777, ("lynx", 0.9))
        c.shot(day * 1440, ("fox", 0.9))
    parts = [s.tables() for s in (a, b, c)]
    media, detections = (pa.concat_tables([p[i] for p in parts]) for i in range(2))
    csv = (b"camera_id,deployment_id,start,end,timezone,clock_offset_s,clock_offset_end_s,clock_follows_dst\n"
           b"cam-a,a1,2024-03-01T00:00:00,2024-05-20T00:00:00,Europe/Oslo,120,-3000,\n"
           b"cam-a,a2,2024-05-25T00:00:00,2024-07-30T00:00:00,Europe/Oslo,0,,\n"
           b"cam-b,b1,2024-03-10T00:00:00,2024-07-01T00:00:00,Europe/Oslo,30,90,true\n")
    deployments = build_deployments(media, read_deployments_csv(csv), now=NOW)
    path = tmp_path / "deployments.parquet"
    pq.write_table(deployments, path)
    con = duckdb.connect()
    for name, t in (("media", media), ("detections", detections), ("species_labels", parts[0][2].slice(0, 0)),
                    ("events", schemas.EVENTS.empty_table()), ("clusters", schemas.CLUSTERS.empty_table()),
                    ("repeat_detections", schemas.REPEAT_DETECTIONS.empty_table())):
        con.register(f"{name}_arrow", t)
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_arrow")
    for sql in extra_view_statements(deployments_parquet=str(path)):
        con.execute(sql)
    want = {(r["camera_id"], r["file_path"]): (r["timestamp"], r["deployment_id"], r["timestamp_issue"] == "outside_deployment")
            for r in apply_clock_offsets(media, deployments, now=NOW).to_pylist()}
    got = {(r[0], r[1]): (r[2], r[3], r[4]) for r in con.execute(
        "SELECT camera_id, file_path, timestamp, deployment_id, outside FROM media_times").fetchall()}
    assert set(got) == set(want)
    for key, (stamp, deployment, outside) in want.items():
        assert abs((got[key][0] - stamp).total_seconds()) < 1e-3 and got[key][1:] == (deployment, outside), key
    assert sum(1 for v in want.values() if v[2]) == 1  # cam-b's last shot, after its take-down
    fixed = {r["detection_id"]: r["timestamp"] for r in apply_clock_offsets(detections, deployments, now=NOW).to_pylist()}
    for detection_id, start in con.execute("SELECT observation_id, start FROM observations WHERE level = 'media'").fetchall():
        assert abs((start - fixed[detection_id]).total_seconds()) < 1e-3
