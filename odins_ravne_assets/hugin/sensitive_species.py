"""Sensitive species: where a listed species was seen, camera positions are rounded before they leave.

Every camera with an event of a listed species (scientific or common name, any case) has its
coordinates rounded to ``decimals`` (0.1 degree by default, about 11 km); the Camtrap DP export also
sets ``coordinateUncertainty`` to cover the rounding, and :func:`generalize_locations` does the same
for any other table with camera coordinates (clusters, sites).
"""

from __future__ import annotations

import math
from typing import Iterable

import pyarrow as pa


def sensitive_cameras(events: pa.Table, sensitive_species: Iterable[str]) -> set[str]:
    """Cameras with at least one event of a listed species (scientific or common name, any case)."""
    wanted = {s.strip().lower() for s in sensitive_species if s and s.strip()}
    if not wanted:
        return set()
    out = set()
    for e in events.select(["camera_id", "species", "scientific_name"]).to_pylist():
        if (e["species"] or "").lower() in wanted or (e["scientific_name"] or "").lower() in wanted:
            out.add(e["camera_id"])
    return out


def generalize(lat: float, lon: float, decimals: int) -> tuple[float, float, int]:
    """Round a position to ``decimals`` places: (lat, lon, uncertainty in metres covering the rounding)."""
    step = 10.0 ** -decimals
    # Half a grid cell's diagonal at this latitude; the cell is narrower east-west away from the equator.
    half_ns = 0.5 * step * 111_195.0
    half_ew = half_ns * math.cos(math.radians(min(abs(lat), 89.9)))
    return round(lat, decimals), round(lon, decimals), int(math.ceil(math.hypot(half_ns, half_ew)))


def generalize_locations(table: pa.Table, cameras: set[str], *, decimals: int = 1) -> pa.Table:
    """A copy of ``table`` (camera_id, latitude, longitude) with the given cameras' positions rounded."""
    if not cameras:
        return table
    rows = table.to_pylist()
    for row in rows:
        if row["camera_id"] in cameras and row.get("latitude") is not None:
            row["latitude"], row["longitude"], _ = generalize(row["latitude"], row["longitude"], decimals)
    return pa.Table.from_pylist(rows, schema=table.schema)
