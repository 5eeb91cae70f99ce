"""Detection histories for occupancy models, in the shape camtrapR's ``detectionHistory`` makes.

One row per *station*, one column per *occasion* (``o1``, ``o2``, ... as camtrapR names them):

- a station is a site (``clusters.site_id``; a camera without a site row is a station of its own) or,
  with ``by="camera"``, a camera. A site's cameras are pooled: a day is operating when any of them
  operated (camtrapR's ``camerasIndependent = FALSE``).
- occasions are ``occasion_days`` consecutive days counted from each station's own setup day, its
  first ``camera_operation`` day (camtrapR's default ``day1 = "station"``); the columns run to the
  last occasion of the longest station.
- a cell is NA when no day of the occasion was operating (before setup, after take-down, outages:
  :mod:`odins_ravne_assets.hugin.effort`), 1 when an animal event of the species started on an
  operating day of it, else 0. An event on a day the station was not operating is not counted (the
  camera is known not to have been working as set up). Events without a plausible start (no
  capture time, before 2000, in the future) date no detection.
- the species is matched against the events' ``species`` or ``scientific_name``, case-insensitive.

The Stage 3 macro ``detection_history(species_name, occasion_days, station_by := 'site')``
(``hugin.stage3_views``) answers the same in long form, one row per station and occasion.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from gpu_ops.fileio import atomic_write
from odins_ravne_assets.hugin.deployments import timestamp_plausibility

STATION_KINDS = ("site", "camera")


def history_rows(
    operation: pa.Table, events: pa.Table, clusters: pa.Table | None = None, *, species: str,
    occasion_days: int, by: str = "site", now: datetime | None = None,
) -> list[dict[str, Any]]:
    """``station``, ``occasion`` (from 1), ``days_operating`` and ``detected`` (1, 0 or None) per cell."""
    if occasion_days < 1:
        raise ValueError(f"occasion_days is {occasion_days}; an occasion is 1 day or more")
    if by not in STATION_KINDS:
        raise ValueError(f"stations are by {by!r}; use one of {', '.join(STATION_KINDS)}")
    site_of = {} if by == "camera" or clusters is None else {
        r["camera_id"]: r["site_id"] for r in clusters.select(["camera_id", "site_id"]).to_pylist() if r["site_id"]}

    def station(camera: str) -> str:
        return site_of.get(camera, camera)

    operating: dict[str, dict[date, bool]] = {}
    for row in operation.select(["camera_id", "date", "operating"]).to_pylist():
        days = operating.setdefault(station(row["camera_id"]), {})
        days[row["date"]] = days.get(row["date"], False) or bool(row["operating"])
    wanted = species.strip().lower()
    detected: set[tuple[str, date]] = set()
    for event in events.select(["camera_id", "category", "species", "scientific_name", "start"]).to_pylist():
        names = {(event["species"] or "").lower(), (event["scientific_name"] or "").lower()}
        if event["category"] == "animal" and wanted in names and timestamp_plausibility(event["start"], now) is None:
            detected.add((station(event["camera_id"]), event["start"].date()))

    setup = {s: min(days) for s, days in operating.items()}
    n_occasions = max(((max(days) - setup[s]).days // occasion_days + 1 for s, days in operating.items()), default=0)
    rows = []
    for name in sorted(operating):
        cells = [{"days_operating": 0, "detected_days": 0} for _ in range(n_occasions)]
        for day, works in operating[name].items():
            if works:
                cell = cells[(day - setup[name]).days // occasion_days]
                cell["days_operating"] += 1
                cell["detected_days"] += (name, day) in detected
        rows.extend({
            "station": name, "occasion": k + 1, "days_operating": cell["days_operating"],
            "detected": None if cell["days_operating"] == 0 else int(cell["detected_days"] > 0),
        } for k, cell in enumerate(cells))
    return rows


def detection_history(
    operation: pa.Table, events: pa.Table, clusters: pa.Table | None = None, *, species: str,
    occasion_days: int, by: str = "site", now: datetime | None = None,
) -> pa.Table:
    """The station x occasion matrix: ``station`` then ``o1``..``oK`` (int8, null for NA)."""
    rows = history_rows(operation, events, clusters, species=species, occasion_days=occasion_days, by=by, now=now)
    stations = list(dict.fromkeys(r["station"] for r in rows))
    n_occasions = max((r["occasion"] for r in rows), default=0)
    cells = {(r["station"], r["occasion"]): r["detected"] for r in rows}
    columns = {"station": pa.array(stations, pa.string())}
    for k in range(1, n_occasions + 1):
        columns[f"o{k}"] = pa.array([cells[(s, k)] for s in stations], pa.int8())
    return pa.table(columns) if stations else pa.table({"station": pa.array([], pa.string())})


def write_detection_history_csv(history: pa.Table, path: str | Path) -> Path:
    """The matrix as CSV with ``NA`` for not operating, as R's ``read.csv`` reads it."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(history.column_names)
    for row in history.to_pylist():
        writer.writerow(["NA" if v is None else v for v in row.values()])
    return atomic_write(Path(path), text.getvalue().encode("utf-8"))
