"""Export to Camtrap DP 1.0, the TDWG exchange standard GBIF ingests.

A package is ``datapackage.json`` with ``deployments.csv``, ``media.csv`` and ``observations.csv``.
Observations come at two levels: one media-level row per detection (with its bounding box) and one
event-level row per event (count = the largest simultaneous count; blank events as ``blank``). The
package points at the official schema URLs, as the standard asks; :func:`validate_camtrap_dp` checks
it offline with ``frictionless`` against the table schemas shipped in ``hugin/camtrap_dp/``
(including the foreign keys between the tables).

Decisions the standard forces:

- Camtrap DP times carry a time zone. A deployment with a known zone gets its UTC offset (summer
  time included); one without is written as UTC with ``timestampIssues`` true, which is what that
  field is for.
- A deployment needs coordinates and a start/end: cameras lacking them (no GPS, no usable times)
  are left out of the package with their media and observations, and listed in the result.
- Only ok media with a timestamp are media rows; failed media are in the MegaDetector export.
- Labels a person reviewed (:func:`hugin.review.reviewed_tables`, events marked ``reviewed``) are
  ``classificationMethod: human``; a media reviewed as a whole without a model box has no box.
- Deployments of cameras where a sensitive species was seen get rounded coordinates and a
  ``coordinateUncertainty`` that covers the rounding (:mod:`hugin.sensitive_species`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import mimetypes
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping

import pyarrow as pa

from gpu_ops.fileio import atomic_write
from odins_ravne_assets.hugin.deployments import utc_offset
from odins_ravne_assets.hugin.sensitive_species import generalize, sensitive_cameras

CAMTRAP_DP_VERSION = "1.0"
CAMTRAP_DP_BASE = f"https://raw.githubusercontent.com/tdwg/camtrap-dp/{CAMTRAP_DP_VERSION}"
SCHEMA_DIR = Path(__file__).resolve().parent / "camtrap_dp"
TABLES = ("deployments", "media", "observations")
OBSERVATION_TYPES = {"animal": "animal", "person": "human", "vehicle": "vehicle", "blank": "blank"}


@dataclass
class CamtrapExport:
    datapackage: Path
    counts: dict[str, int]  # rows per table
    skipped_cameras: dict[str, str] = field(default_factory=dict)  # camera -> why it is not in the package
    generalized_cameras: list[str] = field(default_factory=list)


def _media_id(camera_id: str, file_path: str) -> str:
    # Per camera and path, not per content hash: the same file copied into two cameras is two media.
    return hashlib.sha1(f"{camera_id}/{file_path}".encode()).hexdigest()[:16]


def _iso(local: datetime | None, tz_name: str | None) -> str:
    if local is None:
        return ""
    offset = utc_offset(tz_name, local) if tz_name else None
    aware = local.replace(tzinfo=timezone(offset if offset is not None else timedelta(0)), microsecond=0)
    return aware.isoformat().replace("+00:00", "Z")


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else repr(round(float(value), digits))


def export_camtrap_dp(
    dest_dir: str | Path,
    *,
    media: pa.Table,
    detections: pa.Table,
    species_labels: pa.Table,
    events: pa.Table,
    deployments: pa.Table,
    clusters: pa.Table | None = None,
    sensitive_species: Iterable[str] = (),
    decimals: int = 1,
    min_confidence: float = 0.0,
    title: str = "Odins Ravne camera-trap data",
    contributors: list[Mapping[str, Any]] | None = None,
    project: Mapping[str, Any] | None = None,
    created: datetime | None = None,
) -> CamtrapExport:
    """Write a Camtrap DP 1.0 package into ``dest_dir``.

    ``deployments`` is the ``hugin.deployments.DEPLOYMENTS`` table; ``media`` and ``detections`` should
    already have their clock offsets applied (``apply_clock_offsets``; its ``deployment_id`` column
    is used when present). ``min_confidence`` filters media-level observations (detections).
    ``clusters`` (optional) fills ``locationID`` with the site id.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    created = created or datetime.now(timezone.utc).replace(microsecond=0)
    hidden = sensitive_cameras(events, sensitive_species)
    site_of = {r["camera_id"]: r["site_id"] for r in clusters.to_pylist()} if clusters is not None else {}

    # Deployments: only those the standard can describe (coordinates, start and end).
    dep_rows, skipped, deps_by_camera = [], {}, defaultdict(list)
    issues = _timestamp_issue_deployments(media)
    for dep in deployments.to_pylist():
        camera = dep["camera_id"]
        if dep["latitude"] is None:
            skipped[camera] = "no coordinates (no GPS in its media and none in deployments.csv)"
            continue
        if dep["start"] is None or dep["end"] is None:
            skipped[camera] = "no start/end (no usable timestamps and none in deployments.csv)"
            continue
        lat, lon, uncertainty = dep["latitude"], dep["longitude"], None
        if camera in hidden:
            lat, lon, uncertainty = generalize(lat, lon, decimals)
        tz = dep["timezone"]
        deps_by_camera[camera].append(dep)
        dep_rows.append({
            "deploymentID": dep["deployment_id"],
            "locationID": site_of.get(camera, ""),
            "locationName": camera,
            "latitude": _num(lat, 6),
            "longitude": _num(lon, 6),
            "coordinateUncertainty": uncertainty if uncertainty is not None else "",
            "deploymentStart": _iso(dep["start"], tz),
            "deploymentEnd": _iso(dep["end"], tz),
            "cameraID": camera,
            "cameraHeight": _num(dep["camera_height_m"], 3),
            "timestampIssues": "true" if (not tz or dep["deployment_id"] in issues) else "false",
            "baitUse": "" if dep["bait"] is None else ("false" if dep["bait"] == "none" else "true"),
            "habitat": dep["habitat"] or "",
            "deploymentComments": "" if tz else "time zone unknown: times are camera-local written as UTC",
        })
    for camera in sorted({r["camera_id"] for r in deployments.to_pylist()}):
        if camera in skipped and camera in deps_by_camera:
            skipped.pop(camera)  # another deployment of the camera made it in

    def deployment_for(camera: str, when: datetime | None, given: str | None) -> dict | None:
        deps = deps_by_camera.get(camera, [])
        if given is not None:
            return next((d for d in deps if d["deployment_id"] == given), None)
        if len(deps) <= 1 or when is None:
            return deps[0] if deps else None
        return min(deps, key=lambda d: 0 if d["start"] <= when <= d["end"] else
                   min(abs((when - d["start"]).total_seconds()), abs((when - d["end"]).total_seconds())))

    # Media.
    media_rows, media_ids, media_dep = [], set(), {}
    for m in media.to_pylist():
        if m["status"] != "ok" or m["timestamp"] is None:
            continue
        dep = deployment_for(m["camera_id"], m["timestamp"], m.get("deployment_id"))
        if dep is None:
            continue
        mid = _media_id(m["camera_id"], m["file_path"])
        media_ids.add(mid)
        media_dep[mid] = dep
        path = f"{m['camera_id']}/{m['file_path']}"
        mediatype = mimetypes.guess_type(path)[0] or ""
        if not mediatype.startswith(("image/", "video/")):
            mediatype = "video/mp4" if m["media_type"] == "video" else "image/jpeg"
        media_rows.append({
            "mediaID": mid, "deploymentID": dep["deployment_id"], "captureMethod": "activityDetection",
            "timestamp": _iso(m["timestamp"], dep["timezone"]), "filePath": path, "filePublic": "false",
            "fileName": PurePosixPath(m["file_path"]).name, "fileMediatype": mediatype,
        })

    # Observations: media level (one per detection) ...
    labels = {(r["camera_id"], r["detection_id"]): r for r in species_labels.to_pylist()}
    event_index = _event_index(events)
    obs_rows, obs_ids = [], set()
    for d in detections.to_pylist():
        mid = _media_id(d["camera_id"], d["file_path"])
        if mid not in media_ids or d["conf"] is None or d["conf"] < min_confidence:
            continue
        dep = media_dep[mid]
        label = labels.get((d["camera_id"], d["detection_id"]), {})
        when = _iso(d["timestamp"], dep["timezone"])
        # Detection ids start with the content hash: a file copied into two cameras repeats them.
        obs_id = d["detection_id"] if d["detection_id"] not in obs_ids else f"{d['camera_id']}/{d['detection_id']}"
        obs_ids.add(obs_id)
        obs_rows.append({
            "observationID": obs_id, "deploymentID": dep["deployment_id"], "mediaID": mid,
            "eventID": event_index.get((d["camera_id"], d["category"], label.get("species") or d["label"]),
                                       _Spans([])).find(d["timestamp"]),
            "eventStart": when, "eventEnd": when, "observationLevel": "media",
            "observationType": OBSERVATION_TYPES.get(d["category"], "unknown"),
            "scientificName": label.get("scientific_name") or ("Homo sapiens" if d["category"] == "person" else ""),
            "count": label.get("count") or 1,  # a reviewer's count (hugin.review.reviewed_tables)
            "bboxX": _num(_clip(d["bbox_x"]), 6), "bboxY": _num(_clip(d["bbox_y"]), 6),
            # Camtrap DP wants boxes of positive size; a degenerate box is kept as the smallest one.
            "bboxWidth": _num(max(1e-6, _clip(d["bbox_w"]) or 0.0), 6) if d["bbox_w"] is not None else "",
            "bboxHeight": _num(max(1e-6, _clip(d["bbox_h"]) or 0.0), 6) if d["bbox_h"] is not None else "",
            "classificationMethod": label.get("classification_method") or "machine",
            "classifiedBy": label.get("classification_source") or d["model"] or "",
            "classificationProbability": _num(label.get("score") if label.get("score") is not None else d["conf"], 4),
        })
    # ... and event level (one per event).
    for e in events.to_pylist():
        dep = deployment_for(e["camera_id"], e["start"], None)
        if dep is None or e["start"] is None:
            continue
        obs_rows.append({
            "observationID": e["event_id"], "deploymentID": dep["deployment_id"], "mediaID": "",
            "eventID": e["event_id"], "eventStart": _iso(e["start"], dep["timezone"]),
            "eventEnd": _iso(e["end"], dep["timezone"]), "observationLevel": "event",
            "observationType": OBSERVATION_TYPES.get(e["category"], "unknown"),
            "scientificName": e["scientific_name"] or "",
            "count": e["max_count"] if (e["max_count"] or 0) >= 1 else "",
            "classificationMethod": ("human" if e.get("reviewed") else "machine") if e["category"] != "blank" else "",
            "classificationProbability": _num(e["best_conf"], 4),
        })

    counts = {}
    for name, rows in (("deployments", dep_rows), ("media", media_rows), ("observations", obs_rows)):
        counts[name] = _write_csv(dest / f"{name}.csv", _schema_fields(name), rows)

    descriptor = _datapackage(title, created, dep_rows, deps_by_camera, obs_rows, events, contributors, project)
    path = dest / "datapackage.json"
    atomic_write(path, (json.dumps(descriptor, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return CamtrapExport(path, counts, dict(sorted(skipped.items())), sorted(hidden & set(deps_by_camera)))


@dataclass
class _Spans:
    spans: list[tuple[datetime, datetime, str]]

    def find(self, when: datetime | None) -> str:
        # Only an unambiguous match: a detection relabelled by smoothing has no event of its own label.
        hits = [eid for start, end, eid in self.spans if when is not None and start <= when <= end]
        return hits[0] if len(hits) == 1 else ""


def _event_index(events: pa.Table) -> dict[tuple[str, str, str], _Spans]:
    index: dict[tuple[str, str, str], _Spans] = defaultdict(lambda: _Spans([]))
    for e in events.to_pylist():
        if e["start"] is not None and e["category"] != "blank":
            index[(e["camera_id"], e["category"], e["species"])].spans.append((e["start"], e["end"], e["event_id"]))
    return dict(index)


def _clip(value: float | None) -> float | None:
    return None if value is None else min(1.0, max(0.0, float(value)))


def _timestamp_issue_deployments(media: pa.Table) -> set[str]:
    if "timestamp_issue" not in media.column_names or "deployment_id" not in media.column_names:
        return set()
    # Failed media are not in the package: their odd times (often the reason they failed) do not count.
    return {r["deployment_id"] for r in media.select(["deployment_id", "timestamp_issue", "status"]).to_pylist()
            if r["timestamp_issue"] is not None and r["deployment_id"] is not None and r["status"] == "ok"}


def _schema_fields(name: str) -> list[str]:
    return [f["name"] for f in load_table_schema(name)["fields"]]


def load_table_schema(name: str) -> dict[str, Any]:
    """The Camtrap DP table schema shipped with the project (``deployments``, ``media``, ``observations``)."""
    path = SCHEMA_DIR / f"{name}-table-schema.json"
    if not path.exists():
        raise FileNotFoundError(f"Camtrap DP schema {path} is missing: reinstall the package (it ships camtrap_dp/*.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def _write_csv(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> int:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields, extrasaction="raise")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k, "")) for k in fields})
    atomic_write(path, text.getvalue().encode("utf-8"))
    return len(rows)


def _datapackage(title, created, dep_rows, deps_by_camera, obs_rows, events, contributors, project) -> dict:
    lats = [float(r["latitude"]) for r in dep_rows]
    lons = [float(r["longitude"]) for r in dep_rows]
    if lats:
        w, e, s, n = min(lons), max(lons), min(lats), max(lats)
        spatial = {"type": "Polygon", "bbox": [w, s, e, n],
                   "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    else:
        spatial = {"type": "Polygon", "coordinates": []}
    starts = [d["start"] for deps in deps_by_camera.values() for d in deps]
    ends = [d["end"] for deps in deps_by_camera.values() for d in deps]
    # The taxa of the package's own observations (a left-out camera's species are not in it).
    in_package = {r["scientificName"] for r in obs_rows if r["observationType"] == "animal" and r["scientificName"]}
    taxa = {name: None for name in in_package}
    for ev in events.to_pylist():
        if ev["scientific_name"] in in_package and taxa[ev["scientific_name"]] is None:
            taxa[ev["scientific_name"]] = ev["species"]
    levels = sorted({r["observationLevel"] for r in obs_rows}) or ["media", "event"]
    return {
        "profile": f"{CAMTRAP_DP_BASE}/camtrap-dp-profile.json",
        "name": "odins-ravne-camtrap-dp",
        "title": title,
        "created": created.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
        "contributors": list(contributors or [{"title": "Odins Ravne", "role": "publisher"}]),
        "project": {
            "title": title,
            "samplingDesign": "opportunistic",
            "captureMethod": ["activityDetection"],
            "individualAnimals": False,
            "observationLevel": levels,
            **dict(project or {}),
        },
        "spatial": spatial,
        "temporal": {
            "start": min(starts).date().isoformat() if starts else None,
            "end": max(ends).date().isoformat() if ends else None,
        },
        "taxonomic": [{"scientificName": sci, "vernacularNames": {"eng": common}} if common else {"scientificName": sci}
                      for sci, common in sorted(taxa.items())],
        "resources": [
            {"name": name, "path": f"{name}.csv", "profile": "tabular-data-resource", "format": "csv",
             "mediatype": "text/csv", "encoding": "utf-8", "schema": f"{CAMTRAP_DP_BASE}/{name}-table-schema.json"}
            for name in TABLES
        ],
    }


def validate_camtrap_dp(datapackage: str | Path) -> list[str]:
    """Validate a package's tables offline against the shipped schemas; [] when valid, else the errors.

    Checks every row and field (types, required, enums, ranges, unique keys) and the foreign keys
    between the tables, plus the metadata fields Camtrap DP requires in ``datapackage.json``.
    """
    from frictionless import Package, Resource, Schema

    path = Path(datapackage)
    descriptor = json.loads(path.read_text(encoding="utf-8"))
    errors = [f"datapackage.json lacks '{key}'" for key in
              ("resources", "profile", "created", "contributors", "project", "spatial", "temporal", "taxonomic")
              if key not in descriptor]
    names = {r.get("name") for r in descriptor.get("resources", [])}
    errors += [f"datapackage.json has no '{name}' resource" for name in TABLES if name not in names]
    if errors:
        return errors
    resources = [
        Resource(path=f"{name}.csv", basepath=str(path.parent), name=name,
                 schema=Schema.from_descriptor(load_table_schema(name)))
        for name in TABLES
    ]
    report = Package(resources=resources, basepath=str(path.parent)).validate()
    if report.valid:
        return []
    out = []
    for task in report.tasks:
        for error in task.errors:
            out.append(f"{task.name}: {error.message}")
    for error in report.errors:
        out.append(error.message)
    return out
