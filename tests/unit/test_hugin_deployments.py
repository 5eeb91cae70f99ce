from datetime import datetime, timedelta

import pytest
from hugin_tables import T0, Shots

from gpu_ops import schemas
from odins_ravne_assets.hugin.deployments import (
    DEPLOYMENTS,
    DeploymentsError,
    apply_clock_offsets,
    build_deployments,
    read_deployments_csv,
    timestamp_issue_counts,
    trap_nights,
    utc_offset,
)

NOW = datetime(2025, 1, 1)

CSV = b"""camera_id,deployment_id,latitude,longitude,start,end,timezone,clock_offset_s,camera_height_m,bait,habitat
cam-a,cam-a-2024,62.1,10.2,2024-05-31T12:00:00,2024-06-10T12:00:00,Europe/Oslo,300,0.8,none,spruce forest
cam-b,,,,,,+01:00,-3600,,,
"""


def test_csv_is_read_with_its_types_and_defaults(tmp_path):
    path = tmp_path / "deployments.csv"
    path.write_bytes(CSV)
    table = read_deployments_csv(path)
    assert table.schema == DEPLOYMENTS
    a, b = table.to_pylist()
    assert (a["deployment_id"], a["clock_offset_s"], a["camera_height_m"], a["bait"]) == ("cam-a-2024", 300.0, 0.8, "none")
    assert a["start"] == datetime(2024, 5, 31, 12) and a["timezone"] == "Europe/Oslo"
    assert (b["deployment_id"], b["latitude"], b["start"], b["clock_offset_s"]) == ("cam-b", None, None, -3600.0)
    # summer time in Oslo is UTC+2; the fixed offset stays +1
    assert utc_offset("Europe/Oslo", datetime(2024, 6, 1)) == timedelta(hours=2)
    assert utc_offset("+01:00", datetime(2024, 6, 1)) == timedelta(hours=1)


def test_an_offset_in_the_time_becomes_the_time_zone():
    table = read_deployments_csv(b"camera_id,start,end\nc,2024-06-01T10:00:00+02:00,2024-06-02T10:00:00+02:00\n")
    (row,) = table.to_pylist()
    assert (row["start"], row["timezone"]) == (datetime(2024, 6, 1, 10), "+02:00")


@pytest.mark.parametrize("text, message", [
    (b"camera,start\nx,2024-01-01\n", "unknown column"),
    (b"camera_id,latitude\nx,95\n", r"latitude 95.0 is outside \[-90, 90\]"),
    (b"camera_id,latitude\nx,62\n", "both latitude and longitude"),
    (b"camera_id,start\nx,yesterday\n", "not an ISO 8601 time"),
    (b"camera_id,timezone\nx,Mars/Olympus\n", "time zone 'Mars/Olympus' is not known"),
    (b"camera_id,bait\nx,cheese\n", "bait 'cheese' is not one of"),
    (b"camera_id,start,end\nx,2024-02-01,2024-01-01\n", "end .* is before start"),
    (b"camera_id,deployment_id\nx,d1\ny,d1\n", "appears twice"),
])
def test_bad_csv_rows_name_the_line_and_the_fix(text, message):
    with pytest.raises(DeploymentsError, match=message):
        read_deployments_csv(text)


def camera_with_known_offset():
    """cam-a's clock runs 5 minutes slow; cam-b has no deployments.csv row."""
    s = Shots("cam-a")
    s.shot(0, ("elk", 0.9), lat=62.1, lon=10.2)
    s.shot(60, lat=62.1, lon=10.2)
    s.shot(None)
    s.shot(-24 * 60 * 365 * 30)  # a camera reset: 1994
    s.shot(60 * 24 * 365)  # a year later: after the deployment ended
    media, detections, _ = s.tables()
    other = Shots("cam-b")
    other.shot(0, lat=61.0, lon=9.0)
    other.shot(60 * 48, lat=61.0, lon=9.0)
    import pyarrow as pa
    return pa.concat_tables([media, other.tables()[0]]), detections


def test_a_known_clock_offset_is_corrected_and_problems_are_flagged():
    media, detections = camera_with_known_offset()
    csv_table = read_deployments_csv(
        b"camera_id,start,end,clock_offset_s\ncam-a,2024-05-31T00:00:00,2024-06-10T00:00:00,300\n")
    deployments = build_deployments(media, csv_table, now=NOW)
    flagged = apply_clock_offsets(media, deployments, now=NOW)
    rows = [r for r in flagged.to_pylist() if r["camera_id"] == "cam-a"]
    assert rows[0]["timestamp"] == T0 + timedelta(minutes=5)
    assert rows[0]["timestamp_camera"] == T0
    assert [r["timestamp_issue"] for r in rows] == [None, None, "missing", "before_2000", "in_future"]
    assert timestamp_issue_counts(flagged) == {"missing": 1, "before_2000": 1, "in_future": 1}
    # the plain contract table is one select away
    assert flagged.select(schemas.MEDIA.names).schema == schemas.MEDIA
    # detections get the same correction
    (det,) = apply_clock_offsets(detections, deployments, now=NOW).to_pylist()
    assert det["timestamp"] == T0 + timedelta(minutes=5) and det["deployment_id"] == "cam-a"


def test_cameras_without_a_csv_row_are_built_from_their_media():
    media, _ = camera_with_known_offset()
    deployments = build_deployments(media, None, now=NOW).to_pylist()
    a, b = deployments
    # 1994, 2025 (after NOW) and missing times do not stretch the deployment
    assert a["start"] == T0 and a["end"] == T0 + timedelta(minutes=60)
    assert (b["latitude"], b["longitude"], b["source"]) == (61.0, 9.0, "media")
    assert (b["end"] - b["start"]) == timedelta(days=2)
    # judged a year later, the 2025 frame is no longer in the future, but after the deployment
    flagged = apply_clock_offsets(media, build_deployments(media, None, now=NOW), now=datetime(2026, 1, 1))
    issues = [r["timestamp_issue"] for r in flagged.to_pylist() if r["camera_id"] == "cam-a"]
    assert issues == [None, None, "missing", "before_2000", "outside_deployment"]


def test_a_moved_camera_gets_each_frame_into_the_right_deployment():
    s = Shots("cam-a")
    s.shot(0)
    s.shot(60 * 24 * 20)  # 20 days later, at the second site
    media, _, _ = s.tables()
    csv_table = read_deployments_csv(
        b"camera_id,deployment_id,start,end\n"
        b"cam-a,first,2024-05-30T00:00:00,2024-06-10T00:00:00\n"
        b"cam-a,second,2024-06-15T00:00:00,2024-07-01T00:00:00\n")
    flagged = apply_clock_offsets(media, build_deployments(media, csv_table, now=NOW), now=NOW)
    assert flagged.column("deployment_id").to_pylist() == ["first", "second"]
    assert trap_nights(csv_table) == {"cam-a": 11.0 + 16.0}


def test_trap_nights_fall_back_to_the_media_span():
    media, _ = camera_with_known_offset()
    deployments = read_deployments_csv(b"camera_id,start,end\ncam-a,2024-06-01T00:00:00,2024-06-05T12:00:00\ncam-b,,\n")
    assert trap_nights(deployments, media) == {"cam-a": 4.5, "cam-b": 2.0}


def test_one_camera_at_a_time_for_a_partitioned_asset():
    media, _ = camera_with_known_offset()
    csv_table = read_deployments_csv(b"camera_id,clock_offset_s\ncam-a,300\ncam-z,60\n")
    assert [r["camera_id"] for r in build_deployments(media, csv_table, now=NOW).to_pylist()] == ["cam-a", "cam-b", "cam-z"]
    (only,) = build_deployments(media, csv_table, camera_id="cam-a", now=NOW).to_pylist()
    # the CSV row borrows the media's start, moved by the clock offset
    assert (only["camera_id"], only["clock_offset_s"], only["start"]) == ("cam-a", 300.0, T0 + timedelta(minutes=5))


def test_surveyed_coordinates_place_the_camera_for_clustering():
    from odins_ravne_assets.hugin.clusters import cluster_locations
    from odins_ravne_assets.hugin.deployments import deployment_locations

    media, _ = camera_with_known_offset()
    csv_table = read_deployments_csv(b"camera_id,latitude,longitude\ncam-b,62.1001,10.2001\n")
    locations = deployment_locations(build_deployments(media, csv_table, now=NOW), media)
    assert locations == [
        {"camera_id": "cam-a", "latitude": 62.1, "longitude": 10.2, "n_media_with_gps": 2},
        {"camera_id": "cam-b", "latitude": 62.1001, "longitude": 10.2001, "n_media_with_gps": 2},
    ]
    # EXIF put cam-b 120 km away; the surveyed position makes it cam-a's neighbour
    assert {r["site_id"] for r in cluster_locations(locations, max_site_radius_m=100).table.to_pylist()} == {"site-01"}


def test_the_deployments_asset_writes_each_cameras_table_for_the_assets_that_read_it(tmp_path):
    import pyarrow.compute as pc
    from dagster import AssetKey, DagsterInstance, materialize

    from gpu_ops.storage import Storage
    from odins_ravne_assets.definitions import build_definitions
    from odins_ravne_assets.hugin_assets import deployments
    from resources.pipeline import PipelineResource

    media, _ = camera_with_known_offset()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "deployments.csv").write_bytes(b"camera_id,clock_offset_s\ncam-a,300\n")
    output = Storage(str(tmp_path / "out"))
    output.write_parquet(schemas.camera_key("media", "cam-a"), media.filter(pc.equal(media["camera_id"], "cam-a")))
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("cameras", ["cam-a"])
    pipeline = PipelineResource(input_root=str(tmp_path / "in"), output_root=str(tmp_path / "out"))

    result = materialize([deployments], partition_key="cam-a", instance=instance, resources={"pipeline": pipeline})
    assert result.success
    (row,) = output.read_parquet(schemas.camera_prefix("deployments", "cam-a"), empty=DEPLOYMENTS).to_pylist()
    assert (row["camera_id"], row["clock_offset_s"], row["source"]) == ("cam-a", 300.0, "deployments.csv")
    assert result.asset_materializations_for_node("deployments")[0].metadata["deployments"].value == 1
    # Lineage: every asset that reads the table depends on the asset that writes it.
    graph = build_definitions("local").resolve_asset_graph()
    readers = {key.to_user_string() for key in graph.get(AssetKey("deployments")).child_keys}
    assert readers == {"camera_operation", "condensed_reports", "gps_clusters", "reports", "stage3_database", "species_labels"}
