"""Camera effort: whether each camera was operating, day by day (camtrapR's ``cameraOperation``).

A deployment says when a camera stood; the media say whether it worked. Effort is each deployment's
time (``deployments.deployment_windows``) less its outages:

- *suspected outages*: a silence longer than ``max_silence_days`` between two counted capture times,
  or between setup and the first one, or the last one and take-down (a full card, a dead battery).
  The whole silence is left out: the camera is only known to work when it takes a picture. The
  threshold is ``pipeline.effort.max_silence_days`` (default 14; null: silences never count) or the
  deployment's own ``max_silence_days`` in ``deployments.csv`` (a camera with a daily timelapse photo:
  1.5; a quiet trail: 60). Two deployment rows with a gap between them say the camera was away.
- ``camera_operation.csv`` at the top of the input (``camera_id,start,end,operating,note``) confirms or
  overrides: within a row's interval the row decides, whatever the media say (``operating=false``:
  knocked over, still taking pictures of the sky; ``operating=true``: a quiet camera, not a dead one).
  A date without a time is the whole day. Dates read as ``deployments.csv``'s do
  (``pipeline.effort.date_format``).

Counted capture times follow ``hugin.deployments``: the clock-corrected capture times inside a
deployment, never a file time (unless ``pipeline.events.use_file_mtime``), a time before 2000 or in
the future, nor a failed file.

The ``camera_operation`` table (``schemas.CAMERA_OPERATION``) has one row per camera and local
calendar day from its first setup to its last take-down: ``operating`` (some of the day counted, or a
counted capture on a day of no length), ``effort_days`` (the fraction of the day that counted: its
sum is the camera's trap-nights), ``source`` (``media``: operating as the deployment says;
``suspected_outage``; ``camera_operation.csv``: a row of it covers the day; ``not_deployed``: between
deployments) and ``note`` (the silence, or the CSV row's note). Days are wall-clock days (24 hours,
also on a daylight-saving day).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gpu_ops.schemas import CAMERA_OPERATION
from odins_ravne_assets.hugin.deployments import (
    DeploymentsError,
    apply_clock_offsets,
    date_order,
    deployment_windows,
    flag,
    is_date_only,
    local_time,
    read_csv_rows,
)

OPERATION_CSV = "camera_operation.csv"
OPERATION_COLUMNS = ("camera_id", "start", "end", "operating", "note")
DAY = timedelta(days=1)

Interval = tuple[datetime, datetime]


def read_camera_operation_csv(source: str | Path | bytes, *, date_format: str = "auto") -> list[dict[str, Any]]:
    """The rows of ``camera_operation.csv``: ``camera_id``, ``start``, ``end`` (local times; a date
    alone is its whole day), ``operating`` and ``note`` (with ``ambiguous date`` added where the
    day/month order was a guess)."""
    name, lines = read_csv_rows(source, OPERATION_CSV, OPERATION_COLUMNS, ("camera_id", "start", "end", "operating"))
    order, ambiguous = date_order([r.get(k) or "" for _, r in lines for k in ("start", "end")], date_format, name)
    rows = []
    for where, raw in lines:
        if not raw.get("camera_id"):
            raise DeploymentsError(f"{where}: camera_id is empty; every row names its camera folder")
        (start, swap_start), (end, swap_end) = (local_time(raw.get(k), None, order, where, k) for k in ("start", "end"))
        if start is None or end is None:
            raise DeploymentsError(f"{where}: give both start and end (a date alone is its whole day)")
        end += DAY if is_date_only(raw["end"]) else timedelta(0)
        if end < start:
            raise DeploymentsError(f"{where}: end {raw['end']} is before start {raw['start']}")
        operating = flag(raw, "operating", where)
        if operating is None:
            raise DeploymentsError(f"{where}: operating is empty; write true (it was working) or false (it was not)")
        notes = [raw.get("note") or None, "ambiguous date" if ambiguous and (swap_start or swap_end) else None]
        rows.append({"camera_id": raw["camera_id"], "start": start, "end": end, "operating": operating,
                     "note": "; ".join(n for n in notes if n) or None})
    return rows


def camera_operation(
    deployments: pa.Table, media: pa.Table, *, max_silence_days: float | None = None,
    overrides: list[dict[str, Any]] = (), use_file_mtime: bool = False, now: datetime | None = None,
) -> pa.Table:
    """The ``camera_operation`` table of every camera with a deployment window (module docstring)."""
    flagged = apply_clock_offsets(media, deployments, now=now, use_file_mtime=use_file_mtime)
    ok = pc.and_(pc.fill_null(pc.equal(flagged["status"], "ok"), False), pc.is_null(flagged["timestamp_issue"]))
    counted: dict[str, list[datetime]] = {}
    for row in flagged.filter(ok).select(["deployment_id", "timestamp"]).to_pylist():
        counted.setdefault(row["deployment_id"], []).append(row["timestamp"])
    by_camera: dict[str, list[dict[str, Any]]] = {}
    for window in deployment_windows(deployments, media, use_file_mtime=use_file_mtime):
        by_camera.setdefault(window["camera_id"], []).append(window)
    rows = []
    for camera, windows in sorted(by_camera.items()):
        rows.extend(_camera_days(camera, windows, counted, max_silence_days,
                                 [o for o in overrides if o["camera_id"] == camera]))
    return pa.Table.from_pylist(rows, schema=CAMERA_OPERATION)


def outage_days(operation: pa.Table) -> dict[str, int]:
    """Days per source that were not operating, for asset metadata."""
    sources = operation.filter(pc.invert(operation["operating"])).column("source").to_pylist()
    return {source: sources.count(source) for source in sorted(set(sources))}


def _camera_days(camera: str, windows: list[dict[str, Any]], counted: dict[str, list[datetime]],
                 max_silence_days: float | None, overrides: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pieces: list[tuple[Interval, str]] = []  # operating intervals and their deployment
    outages: list[tuple[Interval, str]] = []  # (interval, note)
    captures: list[datetime] = []
    declared = [(o["start"], o["end"]) for o in overrides]
    for window in windows:
        span = (window["start"], window["end"])
        times = sorted(t for t in counted.get(window["deployment_id"], []) if span[0] <= t <= span[1])
        threshold = window.get("max_silence_days")
        threshold = max_silence_days if threshold is None else threshold
        silences = [] if threshold is None else [
            (a, b) for a, b in zip([span[0], *times], [*times, span[1]]) if (b - a) > timedelta(days=threshold)]
        suspected = _subtract(silences, declared)
        outages.extend(((a, b), f"silent {(b - a) / DAY:.1f} days from {a:%Y-%m-%d %H:%M} to {b:%Y-%m-%d %H:%M}")
                       for a, b in suspected)
        down = [*suspected, *((o["start"], o["end"]) for o in overrides if not o["operating"])]
        pieces.extend((piece, window["deployment_id"]) for piece in _subtract([span], down))
        captures.extend(times)

    start, end = min(w["start"] for w in windows), max(w["end"] for w in windows)
    last = (end - timedelta(microseconds=1)).date() if end > start else end.date()
    rows, day = [], start.date()
    while day <= last:
        bounds = (datetime.combine(day, time()), datetime.combine(day, time()) + DAY)
        operating_s = sum(_overlap(piece, bounds) for piece, _ in pieces)
        deployed = {w["deployment_id"]: _overlap((w["start"], w["end"]), bounds) for w in windows
                    if _overlap((w["start"], w["end"]), bounds) > 0 or bounds[0] <= w["start"] == w["end"] < bounds[1]}
        operating = operating_s > 0 or any(
            bounds[0] <= t < bounds[1] and any(p[0] <= t <= p[1] for p, _ in pieces) for t in captures)
        rows_csv = [o for o in overrides if _overlap((o["start"], o["end"]), bounds) > 0]
        silent = [note for interval, note in outages if _overlap(interval, bounds) > 0]
        if rows_csv:
            source = "camera_operation.csv"
        elif operating:
            source = "media"
        else:
            source = "suspected_outage" if silent else "not_deployed"
        notes = [o["note"] for o in rows_csv if o["note"]] or silent
        rows.append({
            "camera_id": camera,
            "deployment_id": max(deployed, key=lambda d: (deployed[d], d)) if deployed else None,
            "date": day, "operating": operating, "effort_days": operating_s / DAY.total_seconds(),
            "source": source, "note": "; ".join(dict.fromkeys(notes)) or None,
        })
        day += DAY
    return rows


def _overlap(a: Interval, b: Interval) -> float:
    return max(0.0, (min(a[1], b[1]) - max(a[0], b[0])).total_seconds())


def _subtract(intervals: list[Interval], cuts: list[Interval]) -> list[Interval]:
    """``intervals`` (closed) less the open ``cuts``: the photo that ends a silence is a moment the
    camera worked, kept as an interval of no length."""
    for cut_start, cut_end in cuts:
        kept = []
        for a, b in intervals:
            if b <= cut_start or a >= cut_end:
                kept.append((a, b))
                continue
            if a <= cut_start:
                kept.append((a, cut_start))
            if cut_end <= b:
                kept.append((cut_end, b))
        intervals = kept
    return intervals
