import math

import pytest
from hugin_tables import table

from gpu_ops import schemas
from odins_ravne_assets.hugin.clusters import cluster_cameras, cluster_locations, haversine_m

LAT0, LON0 = 62.0, 10.0
M_PER_DEG_LAT = 111_195.0  # on the haversine sphere


def offset(north_m: float, east_m: float) -> tuple[float, float]:
    return (LAT0 + north_m / M_PER_DEG_LAT,
            LON0 + east_m / (M_PER_DEG_LAT * math.cos(math.radians(LAT0))))


def media_at(cameras: dict[str, list[tuple[float, float] | None]]):
    rows = []
    for camera, fixes in cameras.items():
        for i, fix in enumerate(fixes):
            lat, lon = fix if fix else (None, None)
            rows.append({"camera_id": camera, "file_path": f"{i}.jpg", "status": "ok",
                         "latitude": lat, "longitude": lon, "gps_status": "ok" if fix else "missing"})
    return table(schemas.MEDIA, rows)


def by_camera(clusters):
    assert clusters.schema == schemas.CLUSTERS
    return {r["camera_id"]: r for r in clusters.to_pylist()}


def test_offsets_are_the_distances_the_test_claims():
    assert haversine_m(*offset(0, 0), *offset(3000, 4000)) == pytest.approx(5000, rel=1e-3)


def test_sites_at_known_distances():
    media = media_at({
        # site 1: three cameras within 60 m
        "cam-01": [offset(0, 0)] * 3,
        "cam-02": [offset(40, 0)],
        "cam-03": [offset(0, 50), offset(0, 50), offset(0, 50), offset(90_000, 0)],  # one wild fix
        # site 2: two cameras 30 m apart, 5 km from site 1
        "cam-04": [offset(3000, 4000)],
        "cam-05": [offset(3030, 4000)],
        # 40 km from everything: a site of its own
        "cam-06": [offset(-40_000, 0)],
        # no GPS at all
        "cam-07": [None, None],
    })
    out = by_camera(cluster_cameras(media))
    assert [out[c]["site_id"] for c in sorted(out)] == [
        "site-01", "site-01", "site-01", "site-02", "site-02", "site-03", "site-04"]
    assert [out[c]["status"] for c in sorted(out)] == [
        "clustered"] * 5 + ["noise", "no_gps"]
    assert [out[c]["cluster_id"] for c in sorted(out)] == [0, 0, 0, 1, 1, -1, -1]
    # the median ignores the one wild fix
    assert haversine_m(out["cam-03"]["latitude"], out["cam-03"]["longitude"], *offset(0, 50)) < 1
    assert out["cam-03"]["n_media_with_gps"] == 4
    assert out["cam-07"]["latitude"] is None and out["cam-07"]["probability"] is None
    assert out["cam-06"]["probability"] == 0.0 and out["cam-01"]["probability"] > 0


def test_failed_and_invalid_media_do_not_place_a_camera():
    media = media_at({"cam-01": [offset(0, 0)], "cam-02": [offset(10, 0)]})
    rows = media.to_pylist() + [
        {"camera_id": "cam-01", "file_path": "x.jpg", "status": "failed", "latitude": 0.0,
         "longitude": 0.0, "gps_status": "ok"},
        {"camera_id": "cam-02", "file_path": "y.jpg", "status": "ok", "latitude": 91.0,
         "longitude": 0.0, "gps_status": "invalid: latitude out of range"},
    ]
    out = by_camera(cluster_cameras(table(schemas.MEDIA, rows)))
    assert out["cam-01"]["n_media_with_gps"] == 1 and out["cam-02"]["n_media_with_gps"] == 1
    assert out["cam-01"]["site_id"] == out["cam-02"]["site_id"] == "site-01"


@pytest.mark.parametrize("cameras, expected", [
    ({}, []),
    ({"cam-01": [offset(0, 0)]}, [("noise", "site-01")]),
    ({"cam-01": [None]}, [("no_gps", "site-01")]),
    ({"cam-01": [offset(0, 0)], "cam-02": [offset(20, 0)]}, [("clustered", "site-01")] * 2),
    ({"cam-01": [offset(0, 0)], "cam-02": [None]}, [("noise", "site-01"), ("no_gps", "site-02")]),
    # two cameras at the very same spot
    ({"cam-01": [offset(0, 0)], "cam-02": [offset(0, 0)]}, [("clustered", "site-01")] * 2),
])
def test_tiny_inputs(cameras, expected):
    out = cluster_cameras(media_at(cameras)) if cameras else cluster_cameras(schemas.empty(schemas.MEDIA))
    assert out.schema == schemas.CLUSTERS
    assert [(r["status"], r["site_id"]) for r in out.to_pylist()] == expected


def test_max_site_radius_gives_hdbscan_a_scale():
    far = {"cam-01": [offset(0, 0)], "cam-02": [offset(50_000, 0)]}
    # Scale-free HDBSCAN calls two lone cameras one site, however far apart...
    assert {r["site_id"] for r in cluster_cameras(media_at(far)).to_pylist()} == {"site-01"}
    # ...a site radius says they are not.
    out = by_camera(cluster_cameras(media_at(far), max_site_radius_m=1000))
    assert [(out[c]["status"], out[c]["site_id"]) for c in sorted(out)] == [("noise", "site-01"), ("noise", "site-02")]

    # two pairs 2 km apart: with min_cluster_size=3 HDBSCAN can only call all four one site
    pairs = media_at({"cam-01": [offset(0, 0)], "cam-02": [offset(50, 0)],
                      "cam-03": [offset(2000, 0)], "cam-04": [offset(2050, 0)]})
    assert {r["status"] for r in cluster_cameras(pairs, min_cluster_size=3).to_pylist()} == {"clustered"}
    assert {r["status"] for r in cluster_cameras(pairs, min_cluster_size=3, max_site_radius_m=1100).to_pylist()} == {"clustered"}
    # a 500 m radius sheds cameras until two are left: fewer than min_cluster_size, so all are noise
    out = cluster_cameras(pairs, min_cluster_size=3, max_site_radius_m=500).to_pylist()
    assert [(r["status"], r["site_id"]) for r in out] == [("noise", f"site-0{i}") for i in range(1, 5)]


def test_persistence_and_stable_ids():
    locations = [
        {"camera_id": "b", "latitude": offset(0, 0)[0], "longitude": offset(0, 0)[1]},
        {"camera_id": "a", "latitude": offset(3000, 0)[0], "longitude": offset(3000, 0)[1]},
        {"camera_id": "c", "latitude": offset(10, 0)[0], "longitude": offset(10, 0)[1]},
        {"camera_id": "d", "latitude": offset(3010, 0)[0], "longitude": offset(3010, 0)[1]},
    ]
    result = cluster_locations(locations)
    out = by_camera(result.table)
    # cluster 0 / site-01 is the one holding camera "a", whatever HDBSCAN numbered it
    assert (out["a"]["cluster_id"], out["a"]["site_id"]) == (0, "site-01")
    assert (out["b"]["cluster_id"], out["b"]["site_id"]) == (1, "site-02")
    assert sorted(result.persistence) == [0, 1] and all(p > 0 for p in result.persistence.values())
    assert cluster_locations(list(reversed(locations))).table.equals(result.table)


def test_bad_settings_are_explained():
    with pytest.raises(ValueError, match="min_cluster_size is 1"):
        cluster_cameras(schemas.empty(schemas.MEDIA), min_cluster_size=1)
    with pytest.raises(ValueError, match="max_site_radius_m"):
        cluster_cameras(schemas.empty(schemas.MEDIA), max_site_radius_m=0)


def test_min_samples_above_the_camera_count_is_lowered_not_an_error():
    media = media_at({"cam-01": [offset(0, 0)], "cam-02": [offset(20, 0)]})
    out = cluster_cameras(media, min_samples=5).to_pylist()
    assert [r["status"] for r in out] == ["clustered", "clustered"]
