"""Sites: cameras grouped by location with HDBSCAN on the haversine metric.

One location per camera: the median latitude and longitude of its ok media with ``gps_status == ok``
(the median, not the mean, so one bad fix does not drag the camera). HDBSCAN then runs on those points
in radians with the haversine metric, so distances are great-circle distances on the Earth.

Decisions for small and awkward inputs (documented because HDBSCAN itself has no answer for them):

- Cameras without GPS get status ``no_gps``, ``cluster_id`` -1, no coordinates, and still a site of their
  own: a camera stands somewhere, and per-site figures would otherwise silently lose it.
- Fewer located cameras than ``min_cluster_size`` (0 or 1 cameras, for a start): no cluster can exist
  by definition, so every located camera is ``noise`` with its own site. HDBSCAN is not called (its
  nearest-neighbour step raises on fewer points than ``min_samples``).
- ``min_samples`` larger than the number of located cameras is lowered to that number for the run.
- ``allow_single_cluster`` is on: with a handful of cameras the whole set often *is* one site, and
  plain HDBSCAN would call all of them noise. The other side of that: HDBSCAN has no distance scale,
  so two cameras 50 km apart are "one cluster" if they are all there is. ``max_site_radius_m`` gives
  the scale: a cluster whose members lie farther than that from its centre sheds its farthest camera
  (to noise) until it fits, and a cluster left smaller than ``min_cluster_size`` dissolves into noise.
- Noise cameras each get a site of their own (status ``noise``).

Site ids are stable: ``site-01``, ``site-02``, ... numbered by the smallest camera id in each site, so
adding a camera far away does not renumber the others unless its id sorts first. Cluster ids are
renumbered the same way (HDBSCAN's own numbering depends on tree internals).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gpu_ops import schemas

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG), the haversine convention


@dataclass(frozen=True)
class Clustering:
    """The clusters table plus what does not fit in it: HDBSCAN's persistence per cluster id."""

    table: pa.Table  # schemas.CLUSTERS
    persistence: dict[int, float] = field(default_factory=dict)  # cluster_id -> cluster persistence


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dphi, dlmb = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def camera_locations(media: pa.Table) -> list[dict[str, Any]]:
    """One row per camera in ``media``: camera_id, latitude, longitude (median; None without GPS), n."""
    for column in ("camera_id", "latitude", "longitude", "gps_status", "status"):
        if column not in media.column_names:
            raise ValueError(f"media table lacks column {column!r}: expected the schemas.MEDIA layout")
    cameras = sorted({c for c in media.column("camera_id").to_pylist() if c is not None})
    ok = pc.and_(
        pc.and_(pc.equal(media["status"], "ok"), pc.equal(media["gps_status"], "ok")),
        pc.and_(pc.is_valid(media["latitude"]), pc.is_valid(media["longitude"])),
    )
    located = media.filter(pc.fill_null(ok, False)).select(["camera_id", "latitude", "longitude"])
    points: dict[str, list[tuple[float, float]]] = {c: [] for c in cameras}
    for row in located.to_pylist():
        points[row["camera_id"]].append((row["latitude"], row["longitude"]))
    out = []
    for camera in cameras:
        pts = np.array(points[camera], dtype=float).reshape(-1, 2)
        lat, lon = (float(v) for v in np.median(pts, axis=0)) if len(pts) else (None, None)
        out.append({"camera_id": camera, "latitude": lat, "longitude": lon, "n_media_with_gps": len(pts)})
    return out


def cluster_cameras(
    media: pa.Table,
    *,
    min_cluster_size: int = 2,
    min_samples: int = 1,
    max_site_radius_m: float | None = None,
) -> pa.Table:
    """Cameras grouped into sites, as ``schemas.CLUSTERS`` rows (one per camera in ``media``)."""
    return cluster_locations(
        camera_locations(media),
        min_cluster_size=min_cluster_size,
        min_samples=min_samples,
        max_site_radius_m=max_site_radius_m,
    ).table


def cluster_locations(
    locations: list[dict[str, Any]],
    *,
    min_cluster_size: int = 2,
    min_samples: int = 1,
    max_site_radius_m: float | None = None,
) -> Clustering:
    """Cluster camera locations (``camera_locations`` rows, or deployment locations) into sites."""
    if min_cluster_size < 2:
        raise ValueError(f"min_cluster_size is {min_cluster_size}: HDBSCAN needs 2 or more")
    if min_samples < 1:
        raise ValueError(f"min_samples is {min_samples}: use 1 or more")
    if max_site_radius_m is not None and not max_site_radius_m > 0:
        raise ValueError(f"max_site_radius_m is {max_site_radius_m}: use metres > 0, or None for no limit")

    rows = sorted(locations, key=lambda r: r["camera_id"])
    located = [r for r in rows if r["latitude"] is not None and r["longitude"] is not None]
    labels = np.full(len(located), -1, dtype=int)
    probabilities = np.zeros(len(located))
    persistence: dict[int, float] = {}
    if len(located) >= min_cluster_size:
        import hdbscan  # imported here: it is slow to import and only this path needs it

        X = np.radians(np.array([[r["latitude"], r["longitude"]] for r in located], dtype=float))
        model = hdbscan.HDBSCAN(
            min_cluster_size=min_cluster_size,
            min_samples=min(min_samples, len(located)),
            metric="haversine",
            allow_single_cluster=True,
        ).fit(X)
        labels = model.labels_.astype(int).copy()
        probabilities = model.probabilities_.astype(float).copy()
        raw_persistence = {i: float(p) for i, p in enumerate(model.cluster_persistence_)}
        if max_site_radius_m is not None:
            labels = _enforce_radius(located, labels, max_site_radius_m, min_cluster_size)
        probabilities[labels < 0] = 0.0
        # Renumber clusters by their smallest camera id (rows are sorted) so ids are stable.
        renumber: dict[int, int] = {}
        for label in labels:
            if label >= 0 and label not in renumber:
                renumber[label] = len(renumber)
        persistence = {renumber[k]: v for k, v in raw_persistence.items() if k in renumber}
        labels = np.array([renumber.get(label, -1) for label in labels], dtype=int)

    by_camera = {r["camera_id"]: (int(lab), float(p)) for r, lab, p in zip(located, labels, probabilities)}
    # Sites: one per cluster, one per noise or unlocated camera; numbered by smallest camera id.
    site_key: dict[str, tuple] = {}
    for r in rows:
        label = by_camera.get(r["camera_id"], (-1, 0.0))[0]
        site_key[r["camera_id"]] = ("cluster", label) if label >= 0 else ("camera", r["camera_id"])
    first_camera: dict[tuple, str] = {}
    for camera, key in site_key.items():
        first_camera.setdefault(key, camera)
    ordered = sorted(first_camera, key=lambda k: first_camera[k])
    width = max(2, len(str(len(ordered))))
    site_ids = {key: f"site-{i + 1:0{width}d}" for i, key in enumerate(ordered)}

    out = []
    for r in rows:
        camera = r["camera_id"]
        if camera in by_camera:
            label, prob = by_camera[camera]
            status = "clustered" if label >= 0 else "noise"
        else:
            label, prob, status = -1, None, "no_gps"
        out.append(
            {
                "camera_id": camera,
                "latitude": r["latitude"],
                "longitude": r["longitude"],
                "n_media_with_gps": int(r.get("n_media_with_gps") or 0),
                "cluster_id": label,
                "site_id": site_ids[site_key[camera]],
                "status": status,
                "probability": prob,
            }
        )
    return Clustering(pa.Table.from_pylist(out, schema=schemas.CLUSTERS), persistence)


def _enforce_radius(
    located: list[dict[str, Any]], labels: np.ndarray, radius_m: float, min_cluster_size: int
) -> np.ndarray:
    labels = labels.copy()
    for label in sorted(set(labels.tolist()) - {-1}):
        members = [i for i in range(len(located)) if labels[i] == label]
        while members:
            lat, lon = site_centre([(located[i]["latitude"], located[i]["longitude"]) for i in members])
            dist = [haversine_m(lat, lon, located[i]["latitude"], located[i]["longitude"]) for i in members]
            worst = int(np.argmax(dist))
            if dist[worst] <= radius_m:
                break
            labels[members.pop(worst)] = -1
        if len(members) < min_cluster_size:
            for i in members:
                labels[i] = -1
    return labels


def site_centre(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Centre of a few nearby points in degrees: the mean of their unit vectors (safe across 180°)."""
    lat = np.radians([p[0] for p in points])
    lon = np.radians([p[1] for p in points])
    x, y, z = (np.cos(lat) * np.cos(lon)).mean(), (np.cos(lat) * np.sin(lon)).mean(), np.sin(lat).mean()
    return float(np.degrees(np.arctan2(z, math.hypot(x, y)))), float(np.degrees(np.arctan2(y, x)))
