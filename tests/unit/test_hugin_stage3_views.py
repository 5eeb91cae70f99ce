from datetime import datetime

import duckdb
import pyarrow as pa
import pytest
from hugin_tables import Shots

from gpu_ops import schemas

from odins_ravne_assets.hugin.clusters import cluster_locations, camera_locations
from odins_ravne_assets.hugin.deployments import build_deployments, trap_nights
from odins_ravne_assets.hugin.events import condense_events
from odins_ravne_assets.hugin.sites import site_summary
from odins_ravne_assets.hugin.stage3_views import ANALYST_QUERIES, EXTRA_VIEWS, extra_view_statements, extra_views

NOW = datetime(2025, 1, 1)


def survey():
    a, b, c = Shots("cam-a"), Shots("cam-b"), Shots("cam-c")
    for day in range(4):
        a.shot(day * 1440, ("elk", 0.9), ("elk", 0.8), lat=62.0, lon=10.0)
        b.shot(day * 1440 + 720, ("elk", 0.9), lat=62.0002, lon=10.0)
        c.shot(day * 1440 + 60, ("lynx", 0.8), lat=61.0, lon=9.0)
    a.shot(30, ("person", 0.9, "person"), lat=62.0, lon=10.0)
    c.shot(40 * 1440, status="failed", lat=61.0, lon=9.0)
    parts = [s.tables() for s in (a, b, c)]
    media, detections, labels = (pa.concat_tables([p[i] for p in parts]) for i in range(3))
    events = condense_events(labels, detections, window_minutes=10, min_confidence=0.3, media=media)
    clustering = cluster_locations(camera_locations(media), max_site_radius_m=1000)
    return media, detections, labels, events, clustering


def survey_connection():
    """An in-memory database with the survey's pipeline tables as views, as Stage 3 has them."""
    media, detections, labels, events, clustering = survey()
    con = duckdb.connect()
    for name, t in (("media", media), ("detections", detections), ("species_labels", labels),
                    ("events", events), ("clusters", clustering.table),
                    ("repeat_detections", schemas.REPEAT_DETECTIONS.empty_table())):
        con.register(f"{name}_arrow", t)
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_arrow")
    return con, (media, detections, labels, events, clustering)


def database(tmp_path, with_parquet: bool, materialize: bool = False):
    con, (media, detections, labels, events, clustering) = survey_connection()
    path = None
    if with_parquet:
        import pyarrow.parquet as pq
        path = str(tmp_path / "deployments.parquet")
        pq.write_table(build_deployments(media, now=NOW), path)
    for sql in extra_view_statements(deployments_parquet=path, materialize_observations=materialize):
        con.execute(sql)
    return con, (media, events, clustering)


@pytest.mark.parametrize("with_parquet", [False, True])
def test_views_agree_with_the_python_site_figures(tmp_path, with_parquet):
    con, (media, events, clustering) = database(tmp_path, with_parquet)
    assert {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()} >= set(EXTRA_VIEWS)
    sites, species = site_summary(events, clustering.table, trap_nights(build_deployments(media, now=NOW), media))
    got = {r[0]: r[1:] for r in con.execute(
        "SELECT site_id, n_cameras, trap_nights, n_animal_events, species_richness FROM sites").fetchall()}
    for r in sites.to_pylist():
        assert got[r["site_id"]][:2] == (r["n_cameras"], pytest.approx(r["trap_nights"]))
        assert got[r["site_id"]][2:] == (r["n_animal_events"], r["species_richness"])
    got = {(r[0], r[1]): r[2] for r in con.execute(
        "SELECT site_id, species, events_per_100_trap_nights FROM site_species").fetchall()}
    assert got == {(r["site_id"], r["species"]): pytest.approx(r["events_per_100_trap_nights"])
                   for r in species.to_pylist()}
    # cams a and b: 4 elk events each over 3 + 3 days of effort
    assert got[("site-01", "elk")] == pytest.approx(100 * 8 / 6)


@pytest.mark.parametrize("materialize", [False, True])
def test_observations_hold_both_levels(tmp_path, materialize):
    con, (media, events, _) = database(tmp_path, False, materialize)
    levels = dict(con.execute("SELECT level, count(*) FROM observations GROUP BY level").fetchall())
    assert levels == {"media": 8 + 1 + 4 + 4, "event": events.num_rows}
    assert con.execute("SELECT DISTINCT species FROM observations WHERE category = 'person'").fetchall() == [("human",)]
    assert con.execute("SELECT count(*) FROM observations WHERE site_id IS NULL").fetchone() == (0,)


def test_the_five_analyst_questions_run_and_answer(tmp_path):
    con, _ = database(tmp_path, False)
    answers = {name: con.execute(sql).fetchall() for name, (_, sql) in ANALYST_QUERIES.items()}
    assert len(answers) == 5 and all(answers.values())
    assert ("site-02", "lynx", 4) == answers["detection_rate"][-1][:3]
    assert ("lynx", 5, 4) in answers["activity_by_hour"]  # T0 is 04:00, lynx one hour later
    assert answers["species_by_site_by_month"][0][:2] == ("site-01", "elk")
    assert answers["species_by_site_by_month"][0][3:5] == (12, 2)  # 8 + 4 elk detections at cams a and b
    # the person passed cam-a half an hour after the first elk: that elk and the next day's are within a day
    assert answers["people_and_animals"] == [("cam-a", "elk", 2)]
    health = {r[0]: r[1:] for r in answers["camera_health"]}
    assert health["cam-c"][:2] == (5, 1)


def test_the_view_bodies_fit_the_stage3_builder(tmp_path):
    """build_stage3(extra_views=...) creates each as CREATE VIEW name AS <select>."""
    con, (media, detections, labels, events, clustering) = survey_connection()
    for name, select in extra_views(deployments_from_media=True).items():
        con.execute(f'CREATE VIEW "{name}" AS {select}')
    assert con.execute("SELECT count(*) FROM sites").fetchone() == (2,)
    assert "deployments" not in extra_views(deployments_from_media=False)


def test_clock_offsets_reach_the_observations(tmp_path):
    import pyarrow.parquet as pq

    from hugin_tables import T0
    from odins_ravne_assets.hugin.deployments import read_deployments_csv

    media, detections, labels, events, clustering = survey()
    # cam-a's clock is 10 minutes slow; its deployment ends before its last day
    csv_table = read_deployments_csv(b"camera_id,start,end,clock_offset_s\n"
                                     b"cam-a,2024-06-01T00:00:00,2024-06-03T12:00:00,600\n")
    path = tmp_path / "deployments.parquet"
    pq.write_table(build_deployments(media, csv_table, now=NOW), path)
    con = duckdb.connect()
    for name, t in (("media", media), ("detections", detections), ("species_labels", labels),
                    ("events", events), ("clusters", clustering.table),
                    ("repeat_detections", schemas.REPEAT_DETECTIONS.empty_table())):
        con.register(f"{name}_arrow", t)
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_arrow")
    for sql in extra_view_statements(deployments_parquet=str(path)):
        con.execute(sql)
    first = con.execute("SELECT min(start) FROM observations WHERE level = 'media' AND camera_id = 'cam-a'").fetchone()[0]
    assert first == T0.replace(minute=10)
    health = {r[0]: r[1:] for r in con.execute(ANALYST_QUERIES["camera_health"][1]).fetchall()}
    assert health["cam-a"] == (5, 0, 0, 1)  # day 3 at 04:10 is after the end
