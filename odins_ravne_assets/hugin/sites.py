"""Per-site figures: richness, detection rates per 100 trap-nights, first and last seen.

Inputs are the contract tables: ``events`` (all cameras), ``clusters`` (camera -> site) and the
effort per camera from :func:`odins_ravne_assets.hugin.deployments.trap_nights`.

Definitions (what analysts will ask about):

- *trap-nights* of a site: the sum over its cameras of their operating days (the ``camera_operation``
  table of :mod:`odins_ravne_assets.hugin.effort`: deployment days less suspected and confirmed
  outages) or, for a camera without that table, deployment days (start to end; where a deployment
  has no start/end, the span of the camera's plausible media timestamps). Fractional.
- *events per 100 trap-nights* of a species at a site: animal events of that species / trap-nights
  x 100 (the relative abundance index of camera-trap literature, with independent events given by the
  compression window). Null when the site has no measured effort.
- *species richness*: distinct animal species among the site's events (species as named by Stage 2;
  a class-level label such as ``bird`` counts as one).
- Events without a start time count towards richness and event counts but not first/last seen;
  nor does a start before 2000 or in the future (a reset camera clock: ``hugin.deployments``), which
  events no longer carry but an older events table may.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Mapping

import pyarrow as pa

from odins_ravne_assets.hugin.clusters import site_centre
from odins_ravne_assets.hugin.deployments import timestamp_plausibility

SITES = pa.schema(
    [
        ("site_id", pa.string()),
        ("status", pa.string()),  # clustered | noise | no_gps (the status of its cameras)
        ("cluster_id", pa.int32()),
        ("n_cameras", pa.int32()),
        ("camera_ids", pa.string()),  # comma-separated, sorted
        ("latitude", pa.float64()),  # centre of its located cameras
        ("longitude", pa.float64()),
        ("persistence", pa.float64()),  # HDBSCAN cluster persistence; null for single-camera sites
        ("trap_nights", pa.float64()),
        ("n_animal_events", pa.int32()),
        ("species_richness", pa.int32()),
        ("first_seen", pa.timestamp("us")),
        ("last_seen", pa.timestamp("us")),
    ]
)

SITE_SPECIES = pa.schema(
    [
        ("site_id", pa.string()),
        ("species", pa.string()),
        ("scientific_name", pa.string()),
        ("n_events", pa.int32()),
        ("n_individuals_max", pa.int32()),  # the largest simultaneous count seen at the site
        ("trap_nights", pa.float64()),
        ("events_per_100_trap_nights", pa.float64()),
        ("first_seen", pa.timestamp("us")),
        ("last_seen", pa.timestamp("us")),
    ]
)


def site_summary(
    events: pa.Table,
    clusters: pa.Table,
    trap_nights: Mapping[str, float],
    *,
    persistence: Mapping[int, float] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """``(sites, site_species)`` tables: one row per site, and one per site and animal species."""
    site_of = {r["camera_id"]: r for r in clusters.to_pylist()}
    cameras_of: dict[str, list[dict]] = defaultdict(list)
    for row in site_of.values():
        cameras_of[row["site_id"]].append(row)

    per_species: dict[tuple[str, str], list[dict]] = defaultdict(list)
    unplaced = set()
    for event in events.to_pylist():
        if event["category"] != "animal":
            continue
        camera = site_of.get(event["camera_id"])
        if camera is None:
            unplaced.add(event["camera_id"])
            continue
        per_species[(camera["site_id"], event["species"])].append(event)
    if unplaced:
        raise ValueError(
            f"events of camera(s) {sorted(unplaced)} have no row in the clusters table: "
            "re-run gps_clusters after adding cameras"
        )

    effort = {
        site: sum(trap_nights.get(c["camera_id"], 0.0) for c in cams) for site, cams in cameras_of.items()
    }
    species_rows = []
    for (site, species), evs in sorted(per_species.items()):
        times = [e["start"] for e in evs if timestamp_plausibility(e["start"]) is None]
        nights = effort.get(site, 0.0)
        species_rows.append({
            "site_id": site,
            "species": species,
            "scientific_name": next((e["scientific_name"] for e in evs if e["scientific_name"]), None),
            "n_events": len(evs),
            "n_individuals_max": max(e["max_count"] or 0 for e in evs),
            "trap_nights": nights,
            "events_per_100_trap_nights": (100.0 * len(evs) / nights) if nights > 0 else None,
            "first_seen": min(times) if times else None,
            "last_seen": max(times) if times else None,
        })

    site_rows = []
    for site, cams in sorted(cameras_of.items()):
        cams = sorted(cams, key=lambda c: c["camera_id"])
        located = [(c["latitude"], c["longitude"]) for c in cams if c["latitude"] is not None]
        lat, lon = site_centre(located) if located else (None, None)
        cluster_id = cams[0]["cluster_id"]
        mine = [r for r in species_rows if r["site_id"] == site]
        firsts = [r["first_seen"] for r in mine if r["first_seen"] is not None]
        lasts = [r["last_seen"] for r in mine if r["last_seen"] is not None]
        site_rows.append({
            "site_id": site,
            "status": cams[0]["status"],
            "cluster_id": cluster_id,
            "n_cameras": len(cams),
            "camera_ids": ",".join(c["camera_id"] for c in cams),
            "latitude": lat,
            "longitude": lon,
            "persistence": (persistence or {}).get(cluster_id) if cluster_id is not None and cluster_id >= 0 else None,
            "trap_nights": effort.get(site, 0.0),
            "n_animal_events": sum(r["n_events"] for r in mine),
            "species_richness": len({r["species"] for r in mine}),
            "first_seen": min(firsts) if firsts else None,
            "last_seen": max(lasts) if lasts else None,
        })
    return pa.Table.from_pylist(site_rows, schema=SITES), pa.Table.from_pylist(species_rows, schema=SITE_SPECIES)
