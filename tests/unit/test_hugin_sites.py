from datetime import timedelta

import pytest
from hugin_tables import T0, table

from gpu_ops import schemas
from odins_ravne_assets.hugin.clusters import cluster_locations
from odins_ravne_assets.hugin.sites import SITE_SPECIES, SITES, site_summary


def event(camera, species, day, count=1, category="animal"):
    start = None if day is None else T0 + timedelta(days=day)
    return {"camera_id": camera, "event_id": f"{camera}-{species}-{day}", "category": category,
            "species": species, "scientific_name": f"Sci {species}" if species else None,
            "start": start, "end": start, "n_media": 1, "max_count": count, "best_conf": 0.9}


def test_richness_rates_and_first_last_seen_by_construction():
    # site-01: cams a+b (10 + 10 trap-nights); site-02: cam c (5 nights); cam d has no GPS
    clustering = cluster_locations([
        {"camera_id": "a", "latitude": 62.0, "longitude": 10.0},
        {"camera_id": "b", "latitude": 62.0001, "longitude": 10.0},
        {"camera_id": "c", "latitude": 61.0, "longitude": 9.0},
        {"camera_id": "d", "latitude": None, "longitude": None},
    ], max_site_radius_m=1000)
    events = table(schemas.EVENTS, [
        event("a", "elk", 1, 2), event("a", "elk", 3), event("b", "elk", 5, 4), event("b", "fox", 2),
        event("b", "fox", None),  # untimed: counted, not dated
        event("a", None, 4, 0, category="blank"), event("a", "human", 4, 1, category="person"),
        event("c", "lynx", 7),
    ])
    sites, species = site_summary(events, clustering.table, {"a": 10, "b": 10, "c": 5},
                                  persistence=clustering.persistence)
    assert sites.schema == SITES and species.schema == SITE_SPECIES
    s = {r["site_id"]: r for r in sites.to_pylist()}
    assert s["site-01"]["camera_ids"] == "a,b" and s["site-01"]["trap_nights"] == 20
    assert (s["site-01"]["species_richness"], s["site-01"]["n_animal_events"]) == (2, 5)
    assert s["site-01"]["persistence"] > 0 and s["site-02"]["persistence"] is None
    assert (s["site-01"]["first_seen"], s["site-01"]["last_seen"]) == (T0 + timedelta(days=1), T0 + timedelta(days=5))
    assert s["site-03"]["status"] == "no_gps" and s["site-03"]["latitude"] is None
    rows = {(r["site_id"], r["species"]): r for r in species.to_pylist()}
    assert rows[("site-01", "elk")]["events_per_100_trap_nights"] == pytest.approx(15.0)
    assert rows[("site-01", "elk")]["n_individuals_max"] == 4
    assert rows[("site-01", "fox")]["n_events"] == 2
    assert rows[("site-01", "fox")]["first_seen"] == rows[("site-01", "fox")]["last_seen"] == T0 + timedelta(days=2)
    assert rows[("site-02", "lynx")]["events_per_100_trap_nights"] == pytest.approx(20.0)
    assert ("site-01", "human") not in rows and ("site-01", None) not in rows


def test_no_effort_means_no_rate_and_unknown_cameras_are_an_error():
    clusters = cluster_locations([{"camera_id": "a", "latitude": 1.0, "longitude": 1.0}]).table
    events = table(schemas.EVENTS, [event("a", "elk", 1)])
    _, species = site_summary(events, clusters, {})
    assert species.to_pylist()[0]["events_per_100_trap_nights"] is None
    with pytest.raises(ValueError, match=r"camera\(s\) \['zz'\] have no row in the clusters table"):
        site_summary(table(schemas.EVENTS, [event("zz", "elk", 1)]), clusters, {})
    empty_sites, empty_species = site_summary(schemas.empty(schemas.EVENTS), schemas.empty(schemas.CLUSTERS), {})
    assert empty_sites.num_rows == 0 and empty_species.num_rows == 0
