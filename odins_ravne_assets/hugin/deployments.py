"""Deployments: where and when each camera stood, and camera clocks put right.

A *deployment* is one camera at one place for one stretch of time. The table comes from an optional
``deployments.csv`` at the top of the input (one row per deployment, columns below) or, for cameras the
CSV does not list, from the media themselves (median GPS fix, first and last good timestamp).

``deployments.csv`` columns (only ``camera_id`` is required; ``deployment_id`` defaults to the
camera id; times are local wall-clock time, as a phone shows it, unless they carry an offset):

===============  ==========================================================================
camera_id        the camera folder name under the input root
deployment_id    unique per deployment; several rows per camera mean the camera was moved
latitude         decimal degrees, WGS84
longitude        decimal degrees, WGS84
start, end       when the camera was set up and taken down (local time)
timezone         IANA name (``Europe/Oslo``) or a fixed offset (``+01:00``); empty: unknown
clock_offset_s   seconds to ADD to the camera's clock to get true local time (camera 5 min slow:
                 ``300``); measured, e.g., by photographing a phone clock at setup
clock_offset_end_s  the same, measured at take-down: the clock drifted linearly in between
clock_follows_dst  ``true`` for a camera that changes its own clock for daylight saving (default
                 ``false``: see "Clocks" below)
max_silence_days  a longer silence of this deployment is a suspected outage (default:
                 ``pipeline.effort.max_silence_days``; see :mod:`odins_ravne_assets.hugin.effort`)
camera_height_m  metres above ground
bait             none | scent | food | visual | acoustic | other
habitat          free text
country          ISO 3166-1 alpha-3 code (``NOR``, ``KEN``, ``USA``): SpeciesNet's geofence
admin1_region    first-level region within the country (``CA`` for California), with country
===============  ==========================================================================

Times are ISO 8601 (``2024-06-01T12:00:00``, or a date alone), EXIF style (``2024:06:01 12:00:00``)
or numeric day and month (``03/04/2024 12:00``, as Timelapse and spreadsheets write them). The order
of day and month is ``pipeline.effort.date_format``: ``day_first``, ``month_first`` or ``auto``
(default), where a date of the file with a day over 12 decides for the whole file (a file that has
both orders is refused). When nothing decides, dates are read day first and each deployment with a
date that would read differently the other way is flagged ``date_issue = ambiguous_date``.

Clocks (decided). A camera's clock runs on one UTC offset all season: camera traps do not change their
clocks for daylight saving. The offset is the one it was set to: ``clock_offset_s`` measured against
a phone at setup tells it; without one the camera is taken to show local time at setup (without a
known setup, the zone's standard time). Corrected times are local wall-clock time in the deployment's
``timezone``, daylight saving included, so a photo the camera stamped 12:00 in July, set in winter in
``Europe/Oslo``, is 13:00. A camera that does change its clock (``clock_follows_dst``) is only
corrected for its offset and drift. Drift is linear in the camera's own time between its readings
at setup and take-down, each measured against a phone then (offsets are first turned into offsets
from UTC at their moment, so a take-down reading taken in summer time is not counted as drift).

:func:`apply_clock_offsets` corrects the ``timestamp`` of any table with ``camera_id`` and ``timestamp``
(media, detections) and flags what is still wrong, in a ``timestamp_issue`` column:
``missing``, ``file_mtime`` (no capture time in the file: the time is the file's modification time),
``before_2000`` (a camera reset to its factory date), ``in_future`` (more than a day ahead of now),
``outside_deployment`` (before setup or after take-down). Rows are never dropped: analysts decide
what to do with a flagged frame, and the flag travels with it. What was applied is in a
``timestamp_correction`` column: ``+``-joined ``clock_offset``, ``clock_drift``, ``dst`` (null: none).

A capture time is only ever a capture time (decided). The EXIF time and a video's creation time are
capture times. A file's modification time is not: on a card copied without keeping times it is the
copy's time, and on S3 the object's LastModified is the upload (``munin.ingest`` never records it).
A local file without a capture time keeps its modification time in ``media.timestamp`` with
``timestamp_source = file_mtime`` so an analyst can see it, but it is flagged ``file_mtime`` and
counts as no time at all: it places no event in time and stretches no deployment's effort, unless
the profile opts in with ``pipeline.events.use_file_mtime: true`` (for cards copied with their
times kept, where the modification time is the moment the camera wrote the photo). Implausible
times (``before_2000``, ``in_future``) never count as effort and never become an event's start
(see :mod:`odins_ravne_assets.hugin.events`).
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import pyarrow.compute as pc

from gpu_ops import schemas
from gpu_ops.classifier_speciesnet import check_geography
from gpu_ops.schemas import DEPLOYMENTS
from odins_ravne_assets.hugin.clusters import camera_locations

CSV_COLUMNS = ("camera_id", "deployment_id", "latitude", "longitude", "start", "end", "timezone",
               "clock_offset_s", "clock_offset_end_s", "clock_follows_dst", "max_silence_days",
               "camera_height_m", "bait", "habitat", "country", "admin1_region")
BAIT_VALUES = ("none", "scent", "food", "visual", "acoustic", "other")
EARLIEST_PLAUSIBLE = datetime(2000, 1, 1)
FUTURE_SLACK = timedelta(days=1)  # time zones and a camera clock a little fast are not "the future"
TIMESTAMP_ISSUES = ("missing", "file_mtime", "before_2000", "in_future", "outside_deployment")
NO_CAPTURE_TIME = frozenset({"missing", "file_mtime"})  # no capture time at all
UNDATED = frozenset({"before_2000", "in_future"})  # a camera clock that counts, set to the wrong date
TIMESTAMP_CORRECTIONS = ("clock_offset", "clock_drift", "dst")
DATE_FORMATS = ("auto", "day_first", "month_first")
_NUMERIC_DATE = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?")
_EXIF_TIME = re.compile(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
TRUE, FALSE = ("true", "yes", "1"), ("false", "no", "0")


class DeploymentsError(ValueError):
    pass


def parse_timezone(value: str | None) -> timezone | ZoneInfo | None:
    """An IANA zone name or a fixed ``+HH:MM`` offset; None for empty."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    match = re.fullmatch(r"(?:UTC|GMT)?([+-])(\d{1,2}):?(\d{2})?", text)
    if match:
        sign = 1 if match.group(1) == "+" else -1
        return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3) or 0)))
    if text.upper() in ("UTC", "Z", "GMT"):
        return timezone.utc
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise DeploymentsError(
            f"time zone {text!r} is not known: use an IANA name like 'Europe/Oslo' or an offset like '+01:00'"
        ) from None


def utc_offset(tz_name: str | None, local: datetime) -> timedelta | None:
    """The UTC offset of a local wall-clock time in the named zone (daylight saving included)."""
    tz = parse_timezone(tz_name)
    return None if tz is None else local.replace(tzinfo=tz).utcoffset()


def read_csv_rows(source: str | Path | bytes, default_name: str, columns: tuple[str, ...],
                  required: tuple[str, ...]) -> tuple[str, list[tuple[str, dict[str, str]]]]:
    """``(name, [(where, row)])`` of a CSV at the top of the input (a path, or its bytes from storage),
    its header checked against ``columns``; ``where`` names the file and line for error messages."""
    if isinstance(source, bytes):
        text, name = source.decode("utf-8-sig"), default_name
    else:
        text, name = Path(source).read_text(encoding="utf-8-sig"), str(source)
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    unknown = [h for h in header if h not in columns]
    missing = [c for c in required if c not in header]
    if unknown or missing:
        raise DeploymentsError(
            f"{name}: " + (f"unknown column(s) {unknown}; " if unknown else f"no {', '.join(missing)} column; ")
            + f"the columns are {', '.join(columns)} ({' and '.join(required)} required)"
        )
    return name, [(f"{name} line {line}", {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in raw.items() if k})
                  for line, raw in enumerate(reader, start=2)]


def date_order(texts: list[str], date_format: str, name: str) -> tuple[str, bool]:
    """``(order, ambiguous)`` for the numeric dates (``03/04/2024``) of one file: ``order`` is
    ``day_first`` or ``month_first``; ``ambiguous`` when nothing in the file decided it."""
    day_first = next((t for t in texts if (m := _NUMERIC_DATE.fullmatch(t)) and int(m.group(1)) > 12), None)
    month_first = next((t for t in texts if (m := _NUMERIC_DATE.fullmatch(t)) and int(m.group(2)) > 12), None)
    if date_format == "day_first" and month_first or date_format == "month_first" and day_first:
        raise DeploymentsError(f"{name}: {month_first or day_first!r} cannot be read {date_format.replace('_', ' ')} "
                               "as pipeline.effort.date_format says: fix the date or the setting")
    if date_format != "auto":
        return date_format, False
    if day_first and month_first:
        raise DeploymentsError(f"{name}: {day_first!r} is day first but {month_first!r} is month first; "
                               "write the dates one way (ISO 8601 like 2024-06-03 reads only one way)")
    return ("month_first" if month_first else "day_first"), not (day_first or month_first)


def local_time(value: str | None, tz, order: str, where: str, key: str) -> tuple[datetime | None, bool]:
    """``(time, ambiguous)`` of one time of a CSV: ``ambiguous`` when its day and month could swap."""
    if not value:
        return None, False
    numeric, exif = _NUMERIC_DATE.fullmatch(value), _EXIF_TIME.fullmatch(value)
    try:
        if numeric:
            first, second, year, hh, mm, ss = (int(g or 0) for g in numeric.groups())
            day, month = (first, second) if order == "day_first" else (second, first)
            return datetime(year, month, day, hh, mm, ss), first != second and max(first, second) <= 12
        if exif:
            return datetime(*(int(g) for g in exif.groups())), False
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise DeploymentsError(f"{where}: {key} {value!r} is not an ISO 8601 time like 2024-06-01T12:00:00 "
                               "nor a date like 01/06/2024 12:00") from None
    if parsed.tzinfo is not None:
        # An explicit offset: convert to the deployment's zone when one is given, else keep its wall clock.
        parsed = (parsed.astimezone(tz) if tz is not None else parsed).replace(tzinfo=None)
    return parsed, False


def is_date_only(value: str | None) -> bool:
    """A date without a time of day (``2024-06-03``, ``03/06/2024``): a whole day as written."""
    numeric = _NUMERIC_DATE.fullmatch(value or "")
    return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", value or "")) or bool(numeric and numeric.group(4) is None)


def flag(raw: dict, key: str, where: str) -> bool | None:
    value = (raw.get(key) or "").lower()
    if not value:
        return None
    if value not in TRUE + FALSE:
        raise DeploymentsError(f"{where}: {key} {raw[key]!r} is not true or false")
    return value in TRUE


def read_deployments_csv(source: str | Path | bytes, *, date_format: str = "auto") -> pa.Table:
    """Parse ``deployments.csv`` (a path, or its bytes as read from storage) into ``DEPLOYMENTS`` rows."""
    name, lines = read_csv_rows(source, "deployments.csv", CSV_COLUMNS, ("camera_id",))
    order, ambiguous = date_order([r.get(k) or "" for _, r in lines for k in ("start", "end")], date_format, name)
    rows, seen = [], set()
    for where, raw in lines:
        camera = raw.get("camera_id") or ""
        if not camera:
            raise DeploymentsError(f"{where}: camera_id is empty; every row names its camera folder")
        tz_name = raw.get("timezone") or None
        tz = parse_timezone(tz_name)
        (start, swap_start), (end, swap_end) = (local_time(raw.get(k), tz, order, where, k) for k in ("start", "end"))
        row = {
            "camera_id": camera,
            "deployment_id": raw.get("deployment_id") or camera,
            "latitude": _number(raw, "latitude", where, -90, 90),
            "longitude": _number(raw, "longitude", where, -180, 180),
            "start": start,
            "end": end,
            "timezone": tz_name or _offset_name(raw.get("start")),
            "clock_offset_s": _number(raw, "clock_offset_s", where) or 0.0,
            "clock_offset_end_s": _number(raw, "clock_offset_end_s", where),
            "clock_follows_dst": flag(raw, "clock_follows_dst", where) or False,
            "max_silence_days": _number(raw, "max_silence_days", where, 0, None),
            "date_issue": "ambiguous_date" if ambiguous and (swap_start or swap_end) else None,
            "camera_height_m": _number(raw, "camera_height_m", where, 0, None),
            "bait": (raw.get("bait") or None),
            "habitat": raw.get("habitat") or None,
            "source": "deployments.csv",
        }
        try:
            row["country"], row["admin1_region"] = check_geography(raw.get("country"), raw.get("admin1_region"), where)
        except ValueError as err:
            raise DeploymentsError(str(err)) from None
        if row["bait"] is not None and row["bait"] not in BAIT_VALUES:
            raise DeploymentsError(f"{where}: bait {row['bait']!r} is not one of {', '.join(BAIT_VALUES)}")
        if (row["latitude"] is None) != (row["longitude"] is None):
            raise DeploymentsError(f"{where}: give both latitude and longitude, or neither")
        if row["start"] and row["end"] and row["end"] < row["start"]:
            raise DeploymentsError(f"{where}: end {row['end']} is before start {row['start']}")
        if row["deployment_id"] in seen:
            raise DeploymentsError(f"{where}: deployment_id {row['deployment_id']!r} appears twice")
        seen.add(row["deployment_id"])
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=DEPLOYMENTS)


def _number(raw: dict, key: str, where: str, lo: float | None = None, hi: float | None = None) -> float | None:
    value = raw.get(key)
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        raise DeploymentsError(f"{where}: {key} {value!r} is not a number") from None
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise DeploymentsError(f"{where}: {key} {number} is outside [{lo}, {hi}]")
    return number


def _offset_name(value: str | None) -> str | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    minutes = int(parsed.utcoffset().total_seconds() // 60)
    return f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def timestamp_plausibility(stamp: datetime | None, now: datetime | None = None) -> str | None:
    """``missing``, ``before_2000``, ``in_future`` or None (plausible) for one camera time."""
    if stamp is None:
        return "missing"
    if stamp < EARLIEST_PLAUSIBLE:
        return "before_2000"
    if stamp > (now or datetime.now(timezone.utc).replace(tzinfo=None)) + FUTURE_SLACK:
        return "in_future"
    return None


def deployments_from_media(media: pa.Table, *, now: datetime | None = None, use_file_mtime: bool = False) -> pa.Table:
    """One deployment per camera from its media: median GPS fix and first/last plausible capture time
    (a file's modification time only with ``use_file_mtime``; see the module docstring)."""
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    locations = {r["camera_id"]: r for r in camera_locations(media)}
    spans: dict[str, list[datetime]] = {c: [] for c in locations}
    columns = [c for c in ("camera_id", "timestamp", "timestamp_source") if c in media.column_names]
    ok = media.filter(pc.fill_null(pc.equal(media["status"], "ok"), False)).select(columns)
    for row in ok.to_pylist():
        if row.get("timestamp_source") == "file_mtime" and not use_file_mtime:
            continue
        if timestamp_plausibility(row["timestamp"], now) is None:
            spans[row["camera_id"]].append(row["timestamp"])
    rows = []
    for camera, loc in sorted(locations.items()):
        times = spans[camera]
        rows.append({
            "camera_id": camera, "deployment_id": camera,
            "latitude": loc["latitude"], "longitude": loc["longitude"],
            "start": min(times) if times else None, "end": max(times) if times else None,
            "timezone": None, "clock_offset_s": 0.0, "clock_follows_dst": False, "camera_height_m": None,
            "bait": None, "habitat": None, "country": None, "admin1_region": None, "source": "media",
        })
    return pa.Table.from_pylist(rows, schema=DEPLOYMENTS)


def build_deployments(
    media: pa.Table, csv_table: pa.Table | None = None, *, camera_id: str | None = None,
    now: datetime | None = None, use_file_mtime: bool = False,
) -> pa.Table:
    """The deployments of every camera in ``media`` (and in the CSV): CSV rows where given, media-built
    rows otherwise. ``camera_id`` keeps one camera only (for a camera-partitioned asset).

    A CSV row without coordinates or without start/end borrows them from the media (their first and
    last times, corrected by its clock), so a CSV that only records clock offsets is enough.
    """
    if camera_id is not None:
        media = media.filter(pc.equal(media["camera_id"], camera_id))
        if csv_table is not None:
            csv_table = csv_table.filter(pc.equal(csv_table["camera_id"], camera_id))
    from_media = {r["camera_id"]: r for r in deployments_from_media(media, now=now, use_file_mtime=use_file_mtime).to_pylist()}
    rows = []
    listed = set()
    for row in (csv_table.to_pylist() if csv_table is not None else []):
        listed.add(row["camera_id"])
        fallback = from_media.get(row["camera_id"])
        if fallback:
            if row["latitude"] is None:
                row["latitude"], row["longitude"] = fallback["latitude"], fallback["longitude"]
            single = sum(1 for r in csv_table.to_pylist() if r["camera_id"] == row["camera_id"]) == 1
            if single and row["start"] is None and fallback["start"] is not None:
                row["start"] = fallback["start"] + timedelta(seconds=row["clock_offset_s"] or 0.0)
            if single and row["end"] is None and fallback["end"] is not None:
                end_offset = row.get("clock_offset_end_s")
                # Read at take-down, the end offset is the last photo's; else the clock carries on from setup.
                row["end"] = (fallback["end"] + timedelta(seconds=end_offset) if end_offset is not None
                              else correct_time(fallback["end"], row)[0])
        rows.append(row)
    rows.extend(r for c, r in sorted(from_media.items()) if c not in listed)
    rows.sort(key=lambda r: (r["camera_id"], r["start"] or datetime.min, r["deployment_id"]))
    return pa.Table.from_pylist(rows, schema=DEPLOYMENTS)


def apply_clock_offsets(
    table: pa.Table, deployments: pa.Table, *, now: datetime | None = None, media: pa.Table | None = None,
    use_file_mtime: bool = False,
) -> pa.Table:
    """Correct ``timestamp`` by each deployment's clock offset and flag timestamp problems.

    Works on any table with ``camera_id`` and ``timestamp`` (media, detections). Returns the same rows
    in the same order with ``timestamp`` corrected (offset, drift and daylight saving: see "Clocks" in
    the module docstring) and four columns appended: ``timestamp_camera`` (the time as the camera
    wrote it), ``deployment_id``, ``timestamp_issue`` (null when fine, else one of
    ``TIMESTAMP_ISSUES``) and ``timestamp_correction`` (what was applied, ``+``-joined
    ``TIMESTAMP_CORRECTIONS``). Select ``schemas.MEDIA.names`` to get back the plain contract table.

    Where a time came from is the table's ``timestamp_source`` (media) or, for a table without one
    (detections), that of its file in ``media``; a ``file_mtime`` time is flagged ``file_mtime``
    unless ``use_file_mtime``.

    With several deployments for one camera, a row goes to the deployment whose window holds its
    corrected time; a row in no window goes to the nearest deployment and is flagged.
    """
    for column in ("camera_id", "timestamp"):
        if column not in table.column_names:
            raise ValueError(f"table lacks column {column!r}: apply_clock_offsets needs camera_id and timestamp")
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    sources = _timestamp_sources(table, media)
    by_camera: dict[str, list[dict[str, Any]]] = {}
    for dep in deployments.to_pylist():
        by_camera.setdefault(dep["camera_id"], []).append(dep)

    cameras = table.column("camera_id").to_pylist()
    stamps = table.column("timestamp").to_pylist()
    corrected, deployment_ids, issues, corrections = [], [], [], []
    for camera, stamp, source in zip(cameras, stamps, sources):
        deps = by_camera.get(camera, [])
        dep, fixed, issue, applied = _place(stamp, deps)
        # No capture time, a clock reset or a wrong year say more than "outside the deployment".
        if stamp is not None and source == "file_mtime" and not use_file_mtime:
            issue = "file_mtime"
        elif fixed is not None:
            issue = timestamp_plausibility(fixed, now) or issue
        corrected.append(fixed)
        deployment_ids.append(dep["deployment_id"] if dep else None)
        issues.append(issue)
        corrections.append("+".join(applied) or None)

    out = table
    if "timestamp_camera" not in out.column_names:
        out = out.append_column("timestamp_camera", table["timestamp"])
    out = out.set_column(out.schema.get_field_index("timestamp"), out.schema.field("timestamp"),
                         pa.array(corrected, type=table.schema.field("timestamp").type))
    for name, values in (("deployment_id", deployment_ids), ("timestamp_issue", issues),
                         ("timestamp_correction", corrections)):
        array = pa.array(values, type=pa.string())
        if name in out.column_names:
            out = out.set_column(out.schema.get_field_index(name), name, array)
        else:
            out = out.append_column(name, array)
    return out


def _timestamp_sources(table: pa.Table, media: pa.Table | None) -> list[str | None]:
    if "timestamp_source" in table.column_names:
        return table.column("timestamp_source").to_pylist()
    if media is None or "file_path" not in table.column_names:
        return [None] * table.num_rows
    source_of = {(r["camera_id"], r["file_path"]): r["timestamp_source"]
                 for r in media.select(["camera_id", "file_path", "timestamp_source"]).to_pylist()}
    return [source_of.get(key) for key in zip(table.column("camera_id").to_pylist(), table.column("file_path").to_pylist())]


def _place(stamp: datetime | None, deps: list[dict[str, Any]]):
    """(deployment, corrected time, issue, corrections applied) for one camera timestamp."""
    if stamp is None:
        return (deps[0] if len(deps) == 1 else None), None, "missing", []
    if not deps:
        return None, stamp, None, []
    candidates = []
    for dep in deps:
        fixed, applied = correct_time(stamp, dep)
        start, end = dep["start"], dep["end"]
        inside = (start is None or fixed >= start) and (end is None or fixed <= end)
        distance = 0.0 if inside else min(
            abs((fixed - t).total_seconds()) for t in (start, end) if t is not None)
        candidates.append((distance, dep["start"] or datetime.min, dep["deployment_id"], dep, fixed, applied))
    distance, _, _, dep, fixed, applied = min(candidates, key=lambda c: c[:3])
    return dep, fixed, (None if distance == 0.0 else "outside_deployment"), applied


def correct_time(stamp: datetime, dep: dict[str, Any]) -> tuple[datetime, list[str]]:
    """``(local time, corrections applied)`` of a camera time in one deployment (module docstring, "Clocks")."""
    start, end = dep["start"], dep["end"]
    at_start = dep.get("clock_offset_s") or 0.0
    at_end = dep.get("clock_offset_end_s")
    zone = parse_timezone(dep.get("timezone"))
    fixed_clock = isinstance(zone, ZoneInfo) and not dep.get("clock_follows_dst")

    def zone_offset(local: datetime | None) -> float:
        if not fixed_clock:
            return 0.0
        if local is None:  # no setup known: the zone's standard time (the lesser of its offsets)
            return min(zone_offset(datetime(stamp.year, month, 1)) for month in (1, 7))
        return local.replace(tzinfo=zone).utcoffset().total_seconds()

    # Offsets from the zone's UTC offset at their moment ("UTC" space; local space for a clock with no zone rules).
    first = at_start - zone_offset(start)
    offset, applied = first, (["clock_offset"] if at_start else [])
    if at_end is not None and start is not None and end is not None:
        last = at_end - zone_offset(end)
        camera_start, camera_end = start - timedelta(seconds=at_start), end - timedelta(seconds=at_end)
        span = (camera_end - camera_start).total_seconds()
        if span > 0 and last != first:
            offset = first + (last - first) * (stamp - camera_start).total_seconds() / span
            applied.append("clock_drift")
    shifted = stamp + timedelta(seconds=offset)
    if not fixed_clock:
        return shifted, applied
    local = shifted.replace(tzinfo=timezone.utc).astimezone(zone).replace(tzinfo=None)
    if local - shifted != timedelta(seconds=zone_offset(start)):
        applied.append("dst")
    return local, applied


def timestamp_issue_counts(flagged: pa.Table) -> dict[str, int]:
    """Counts per issue of a table from :func:`apply_clock_offsets`, for asset metadata."""
    values = [v for v in flagged.column("timestamp_issue").to_pylist() if v is not None]
    return {issue: values.count(issue) for issue in TIMESTAMP_ISSUES if issue in values}


def timestamp_correction_counts(flagged: pa.Table) -> dict[str, int]:
    """Rows per correction applied (``clock_offset``, ``clock_drift``, ``dst``) of a table from
    :func:`apply_clock_offsets`, for asset metadata."""
    applied = [c for v in flagged.column("timestamp_correction").to_pylist() if v for c in v.split("+")]
    return {fix: applied.count(fix) for fix in TIMESTAMP_CORRECTIONS if fix in applied}


def deployment_windows(deployments: pa.Table, media: pa.Table | None = None, *,
                       use_file_mtime: bool = False) -> list[dict[str, Any]]:
    """The deployments whose start and end are known, each as its row with ``start`` and ``end`` set.

    From the deployment's start and end when both are known; otherwise from the span between the
    first and last plausible capture time of its camera's media (which undercounts by up to a day at
    each end: it is what the data can prove).
    """
    spans: dict[str, tuple[datetime, datetime]] = {}
    if media is not None:
        for row in deployments_from_media(media, use_file_mtime=use_file_mtime).to_pylist():
            if row["start"] is not None:
                spans[row["camera_id"]] = (row["start"], row["end"])
    windows = []
    for dep in deployments.to_pylist():
        if dep["start"] is None or dep["end"] is None:
            dep["start"], dep["end"] = spans.get(dep["camera_id"], (None, None))
        if dep["start"] is not None and dep["end"] is not None:
            windows.append(dep)
    return windows


def trap_nights(deployments: pa.Table, media: pa.Table | None = None, *, use_file_mtime: bool = False,
                operation: pa.Table | None = None) -> dict[str, float]:
    """Camera-days of effort per camera.

    With the ``camera_operation`` table (:mod:`odins_ravne_assets.hugin.effort`), a camera that has
    rows in it counts its operating time (outages left out); otherwise, and for a camera without
    rows, the time of its :func:`deployment_windows`. Several deployments of one camera add up.
    """
    nights: dict[str, float] = {}
    for window in deployment_windows(deployments, media, use_file_mtime=use_file_mtime):
        camera = window["camera_id"]
        nights[camera] = nights.get(camera, 0.0) + (window["end"] - window["start"]).total_seconds() / 86400.0
    measured: dict[str, float] = {}
    for row in (operation.select(["camera_id", "effort_days"]).to_pylist() if operation is not None else []):
        measured[row["camera_id"]] = measured.get(row["camera_id"], 0.0) + row["effort_days"]
    nights.update({camera: days for camera, days in measured.items() if camera in nights})
    return nights


def deployment_locations(deployments: pa.Table, media: pa.Table | None = None) -> list[dict[str, Any]]:
    """One location per camera for site clustering (``clusters.cluster_locations``).

    The issue's "HDBSCAN on deployment locations": a camera's position is that of its latest
    deployment with coordinates (``deployments.csv`` wins over EXIF, since it is surveyed), and
    ``n_media_with_gps`` still counts the media fixes behind it.
    """
    fixes = {r["camera_id"]: r["n_media_with_gps"] for r in camera_locations(media)} if media is not None else {}
    latest: dict[str, dict[str, Any]] = {}
    for dep in sorted(deployments.to_pylist(), key=lambda d: (d["camera_id"], d["start"] or datetime.min)):
        if dep["latitude"] is not None or dep["camera_id"] not in latest:
            latest[dep["camera_id"]] = dep
    return [
        {"camera_id": c, "latitude": d["latitude"], "longitude": d["longitude"], "n_media_with_gps": fixes.get(c, 0)}
        for c, d in sorted(latest.items())
    ]
