"""Exports into the formats the next tool reads: Camtrap DP 1.0 and MegaDetector batch output 1.6.

**Camtrap DP 1.0** (the TDWG exchange standard GBIF ingests): ``datapackage.json`` with
``deployments.csv``, ``media.csv`` and ``observations.csv``. Observations come at two levels: one
media-level row per detection (with its bounding box) and one event-level row per event (count = the
largest simultaneous count; blank events as ``blank``). The package points at the official schema URLs,
as the standard asks; :func:`validate_camtrap_dp` checks it offline with ``frictionless`` against the
table schemas shipped in ``hugin/camtrap_dp/`` (including the foreign keys between the tables).

Decisions the standard forces:

- Camtrap DP times carry a time zone. A deployment with a known zone gets its UTC offset (summer
  time included); one without is written as UTC with ``timestampIssues`` true, which is what that
  field is for.
- A deployment needs coordinates and a start/end: cameras lacking them (no GPS, no usable times)
  are left out of the package with their media and observations, and listed in the result.
- Only ok media with a timestamp are media rows; failed media are in the MegaDetector export.

**Sensitive species**: every deployment where a listed species (scientific or common name, any
case) was observed has its coordinates rounded to ``decimals`` (0.1 degree by default, about 11 km)
and ``coordinateUncertainty`` set to cover the rounding. The MegaDetector format carries no
coordinates, so there is nothing to hide there; :func:`generalize_locations` does the same for any
other table with camera coordinates (clusters, sites) before it leaves the project.

**MegaDetector batch output 1.6** (what Timelapse and AddaxAI open): categories
``{"1": "animal", "2": "person", "3": "vehicle"}``, normalized ``[x, y, w, h]`` boxes, failed media
with their ``failure`` string and ``detections: null``, Stage 2 species as ``classifications``.
:func:`read_megadetector_json` turns such a file (from here or from any MegaDetector run) back into
the contract tables, so results computed elsewhere join the pipeline at Stage 2; export -> import ->
export gives the same JSON.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import mimetypes
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping

import pyarrow as pa

from gpu_ops import schemas
from odins_ravne_assets.hugin.deployments import utc_offset

CAMTRAP_DP_VERSION = "1.0"
CAMTRAP_DP_BASE = f"https://raw.githubusercontent.com/tdwg/camtrap-dp/{CAMTRAP_DP_VERSION}"
SCHEMA_DIR = Path(__file__).resolve().parent / "camtrap_dp"
TABLES = ("deployments", "media", "observations")

MD_FORMAT_VERSION = "1.6"
MD_CATEGORIES = {"1": "animal", "2": "person", "3": "vehicle"}
MD_CATEGORY_IDS = {name: cid for cid, name in MD_CATEGORIES.items()}
OBSERVATION_TYPES = {"animal": "animal", "person": "human", "vehicle": "vehicle", "blank": "blank"}
# Extra media columns that carry what the MegaDetector format knows about videos and the contract
# tables do not (yet): kept on imported media so a re-export is unchanged.
MD_MEDIA_EXTRAS = [("frame_rate", pa.float64()), ("frames_processed", pa.list_(pa.int32()))]


# -- sensitive species ------------------------------------------------------------------------------

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


# -- Camtrap DP -------------------------------------------------------------------------------------

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
            "count": 1,
            "bboxX": _num(_clip(d["bbox_x"]), 6), "bboxY": _num(_clip(d["bbox_y"]), 6),
            # Camtrap DP wants boxes of positive size; a degenerate box is kept as the smallest one.
            "bboxWidth": _num(max(1e-6, _clip(d["bbox_w"]) or 0.0), 6),
            "bboxHeight": _num(max(1e-6, _clip(d["bbox_h"]) or 0.0), 6),
            "classificationMethod": "machine",
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
            "classificationMethod": "machine" if e["category"] != "blank" else "",
            "classificationProbability": _num(e["best_conf"], 4),
        })

    counts = {}
    for name, rows in (("deployments", dep_rows), ("media", media_rows), ("observations", obs_rows)):
        counts[name] = _write_csv(dest / f"{name}.csv", _schema_fields(name), rows)

    descriptor = _datapackage(title, created, dep_rows, deps_by_camera, obs_rows, events, contributors, project)
    path = dest / "datapackage.json"
    path.write_text(json.dumps(descriptor, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
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
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k, "")) for k in fields})
    tmp.replace(path)
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


# -- MegaDetector batch output -------------------------------------------------------------------

@dataclass
class MegadetectorResults:
    media: pa.Table  # schemas.MEDIA plus frame_rate and frames_processed (see MD_MEDIA_EXTRAS)
    detections: pa.Table  # schemas.DETECTIONS
    species_labels: pa.Table  # schemas.SPECIES_LABELS (top classification of each detection)
    info: dict[str, Any]


def export_megadetector(
    dest: str | Path | None,
    *,
    media: pa.Table,
    detections: pa.Table,
    species_labels: pa.Table | None = None,
    camera_id: str | None = None,
    info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """MegaDetector batch output (format 1.6) as a dict, also written to ``dest`` when given.

    With ``camera_id``, one camera's file with paths relative to its folder; without, the whole run
    with paths ``<camera_id>/<file_path>`` relative to the input root. ``info`` entries override the
    generated ones (use the imported ``info`` to reproduce a file exactly).
    """
    media_rows = [m for m in media.to_pylist() if camera_id is None or m["camera_id"] == camera_id]
    det_rows = [d for d in detections.to_pylist() if camera_id is None or d["camera_id"] == camera_id]
    labels = ({(r["camera_id"], r["detection_id"]): r for r in species_labels.to_pylist()}
              if species_labels is not None else {})
    used_labels = [labels[(d["camera_id"], d["detection_id"])] for d in det_rows
                   if labels.get((d["camera_id"], d["detection_id"]), {}).get("species")]
    class_names = sorted({r["species"] for r in used_labels})
    class_ids = {name: str(i) for i, name in enumerate(class_names)}
    scientific = {}
    for r in used_labels:
        if r.get("scientific_name"):
            scientific.setdefault(r["species"], r["scientific_name"])

    by_media: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for d in det_rows:
        by_media[(d["camera_id"], d["file_path"])].append(d)
    media_ts = {(m["camera_id"], m["file_path"]): m["timestamp"] for m in media_rows}

    images = []
    for m in sorted(media_rows, key=lambda m: (m["camera_id"], m["file_path"])):
        key = (m["camera_id"], m["file_path"])
        name = m["file_path"] if camera_id is not None else f"{m['camera_id']}/{m['file_path']}"
        if m["status"] != "ok":
            images.append({"file": name, "failure": m.get("failure") or "failed (no reason recorded)",
                           "detections": None})
            continue
        entry: dict[str, Any] = {"file": name}
        is_video = m.get("media_type") == "video"
        dets = sorted(by_media.get(key, []), key=lambda d: (d["frame_number"] or 0, _det_index(d), d["detection_id"]))
        if is_video:
            rate = _frame_rate(m, dets, media_ts.get(key))
            if rate is not None:  # unknown for a video without frame_rate whose detections are all on frame 0
                entry["frame_rate"] = rate
            entry["frames_processed"] = (list(m["frames_processed"]) if m.get("frames_processed") is not None
                                         else sorted({0, *(d["frame_number"] or 0 for d in dets)}))
        out_dets = []
        for d in dets:
            if d["category"] not in MD_CATEGORY_IDS:
                continue
            det: dict[str, Any] = {
                "category": MD_CATEGORY_IDS[d["category"]],
                "conf": round(float(d["conf"]), 3),
                "bbox": [round(float(d[k]), 4) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")],
            }
            if is_video:
                det["frame_number"] = int(d["frame_number"] or 0)
            label = labels.get((d["camera_id"], d["detection_id"]))
            if label and label.get("species") and label.get("score") is not None:
                det["classifications"] = [[class_ids[label["species"]], round(float(label["score"]), 3)]]
            out_dets.append(det)
        entry["detections"] = out_dets
        images.append(entry)

    models = sorted({d["model"] for d in det_rows if d.get("model")})
    sources = sorted({r["classification_source"] for r in used_labels if r.get("classification_source")})
    generated: dict[str, Any] = {
        "format_version": MD_FORMAT_VERSION,
        "detector": models[0] if len(models) == 1 else ("; ".join(models) or "unknown"),
        "detection_completion_time": datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
    }
    if class_names:
        generated["classifier"] = "; ".join(sources) or "unknown"
    generated.update(dict(info or {}))
    generated["format_version"] = MD_FORMAT_VERSION
    result: dict[str, Any] = {"info": generated, "detection_categories": dict(MD_CATEGORIES)}
    if class_names:
        result["classification_categories"] = {class_ids[n]: n for n in class_names}
        if all(n in scientific for n in class_names):
            result["classification_category_descriptions"] = {class_ids[n]: scientific[n] for n in class_names}
    result["images"] = images
    if dest is not None:
        out = Path(dest)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(out)
    return result


def _det_index(d: Mapping[str, Any]) -> int:
    try:
        return int(str(d["detection_id"]).rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def _frame_rate(m: Mapping[str, Any], dets: list[dict], start: datetime | None) -> float | None:
    """The video's frame rate: from a ``frame_rate`` media column when there is one, else derived
    from its detections (media time + frame offset: frame_number / offset), else None."""
    if m.get("frame_rate"):
        return float(m["frame_rate"])
    for d in dets:
        if d["frame_number"] and start is not None and d["timestamp"] is not None:
            seconds = (d["timestamp"] - start).total_seconds()
            if seconds > 0:
                return round(d["frame_number"] / seconds, 3)
    return None


def read_megadetector_json(
    source: str | Path | bytes | Mapping[str, Any],
    *,
    camera_id: str | None = None,
    media: pa.Table | None = None,
) -> MegadetectorResults:
    """Read a MegaDetector batch output file into contract tables.

    ``camera_id``: the file covers one camera and its paths are relative to that camera's folder;
    without it, the first path component is the camera. ``media`` (the ``raw_images`` manifest):
    sha256, timestamps and the rest are taken from it, so detection ids match what Stage 1 would
    write; without it, sha256 is unknown (null) and detection ids use a hash of the path instead.
    """
    if isinstance(source, Mapping):
        doc = dict(source)
    else:
        text = source.decode("utf-8") if isinstance(source, bytes) else Path(source).read_text(encoding="utf-8")
        doc = json.loads(text)
    where = "MegaDetector JSON"
    if not isinstance(doc.get("images"), list) or not isinstance(doc.get("detection_categories"), dict):
        raise ValueError(f"{where}: needs 'images' (a list) and 'detection_categories'; is this a batch output file?")
    info = dict(doc.get("info") or {})
    categories = {str(k): v for k, v in doc["detection_categories"].items()}
    class_names = {str(k): v for k, v in (doc.get("classification_categories") or {}).items()}
    class_desc = {str(k): v for k, v in (doc.get("classification_category_descriptions") or {}).items()}
    known = {}
    if media is not None:
        known = {(m["camera_id"], m["file_path"]): m for m in media.to_pylist()}
    model = info.get("detector") or "megadetector"
    classifier = info.get("classifier")

    media_rows, det_rows, label_rows = [], [], []
    for n, image in enumerate(doc["images"]):
        file = str(image.get("file") or "").replace("\\", "/")
        if not file:
            raise ValueError(f"{where}: images[{n}] has no 'file'")
        if camera_id is not None:
            camera, rel = camera_id, file.lstrip("/")
        else:
            parts = file.lstrip("/").split("/", 1)
            if len(parts) < 2:
                raise ValueError(f"{where}: images[{n}] file {file!r} has no camera folder; pass camera_id= for a per-camera file")
            camera, rel = parts
        base = dict(known.get((camera, rel)) or {})
        failure = image.get("failure")
        is_video = "frame_rate" in image or "frames_processed" in image
        row = {f.name: base.get(f.name) for f in schemas.MEDIA}
        row.update({
            "camera_id": camera, "file_path": rel,
            "media_type": base.get("media_type") or ("video" if is_video else "image"),
            "status": "failed" if failure else "ok",
            "failure": failure if failure else None,
            "frame_rate": image.get("frame_rate"),
            "frames_processed": image.get("frames_processed"),
        })
        if not base:
            row["timestamp_source"] = "none"
            row["gps_status"] = "missing"
            row["frame_count"] = 1 if not is_video else None
        media_rows.append(row)
        if failure:
            continue
        sha = row["sha256"]
        prefix = sha[:16] if sha else hashlib.sha256(f"path:{camera}/{rel}".encode()).hexdigest()[:16]
        per_frame: dict[int, int] = defaultdict(int)
        for det in image.get("detections") or []:
            category = categories.get(str(det.get("category")))
            if category not in MD_CATEGORY_IDS:
                continue  # the format says: unknown categories are "no detection"
            frame = int(det.get("frame_number") or 0)
            index = per_frame[frame]
            per_frame[frame] += 1
            bbox = det.get("bbox") or [0, 0, 0, 0]
            ts = row["timestamp"]
            if ts is not None and frame and image.get("frame_rate"):
                ts = ts + timedelta(seconds=frame / float(image["frame_rate"]))
            det_id = f"{prefix}-{frame}-{index}"
            det_rows.append({
                "camera_id": camera, "detection_id": det_id, "file_path": rel, "sha256": sha,
                "frame_number": frame, "timestamp": ts, "category": category, "label": category,
                "conf": float(det.get("conf") or 0.0),
                "bbox_x": bbox[0], "bbox_y": bbox[1], "bbox_w": bbox[2], "bbox_h": bbox[3],
                "source": "detector", "model": model,
            })
            classes = det.get("classifications") or []
            if classes:
                top_id, top_score = max(classes, key=lambda c: c[1])
                label_rows.append({
                    "camera_id": camera, "detection_id": det_id, "file_path": rel, "crop_path": None,
                    "category": category, "detector_label": category,
                    "species": class_names.get(str(top_id), str(top_id)),
                    "scientific_name": class_desc.get(str(top_id)),
                    "taxon_rank": None, "taxon_class": None, "score": float(top_score),
                    "classification_source": classifier or "megadetector-json",
                })
    media_schema = pa.schema(list(schemas.MEDIA) + [pa.field(n, t) for n, t in MD_MEDIA_EXTRAS])
    return MegadetectorResults(
        pa.Table.from_pylist(media_rows, schema=media_schema),
        pa.Table.from_pylist(det_rows, schema=schemas.DETECTIONS),
        pa.Table.from_pylist(label_rows, schema=schemas.SPECIES_LABELS),
        info,
    )


def import_megadetector_json(
    path: str | Path, *, camera_id: str | None = None, media: pa.Table | None = None
) -> tuple[pa.Table, pa.Table]:
    """``(media, detections)`` from a MegaDetector batch output file (see :func:`read_megadetector_json`).

    ``media`` here is plain ``schemas.MEDIA``; use ``read_megadetector_json`` for the video extras,
    the classifications and the file's ``info``.
    """
    results = read_megadetector_json(path, camera_id=camera_id, media=media)
    return results.media.select(schemas.MEDIA.names), results.detections
