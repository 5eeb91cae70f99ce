"""Reports: a project page and one page per camera, HTML with PNG plots, plus a Markdown summary.

The plots (:mod:`odins_ravne_assets.hugin.report_plots`): events per species, activity by hour of
day, events over time, and a map of sites. Pages link their PNGs by relative path, so a report
folder can be copied or zipped as is.

Pages show the animals too: the best crop of each species (the event with the highest confidence
that has a crop) in a gallery, and on a camera's page each animal event's crop in its row, each
captioned with species, time, camera and confidence. The crops (JPEGs under ``OUTPUT/crops/``) are
copied as small thumbnails into a ``thumbs/`` folder beside each page and linked relatively, so
each page folder stays relocatable; re-encoding drops the crops' EXIF. People and vehicles are
never pictured (privacy: a report is shared more widely than the output folder). A crop that
cannot be read leaves its caption without a picture; the report does not fail for it.

Layout under ``out_dir`` (local folder; the asset uploads it when the output root is on S3)::

    index.html, report.md, species.png, activity.png, timeline.png, sites.png, thumbs/*.jpg
    cameras/<camera_id>/index.html, report.md, species.png, activity.png, timeline.png, thumbs/*.jpg
"""

from __future__ import annotations

import hashlib
import html
import io
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image, UnidentifiedImageError

from odins_ravne_assets.hugin.report_plots import plot_activity, plot_sites, plot_species, plot_timeline

GALLERY_SIDE = 240  # longer side of a species' thumbnail, in pixels
EVENT_SIDE = 120  # of an event's thumbnail in the events table
THUMB_QUALITY = 82


class CropStore(Protocol):
    """Where crops are read from (a :class:`gpu_ops.storage.Storage` of the output root)."""

    def exists(self, key: str) -> bool: ...

    def read_bytes(self, key: str) -> bytes: ...


@dataclass
class Report:
    html_path: Path
    markdown: str  # summary for Dagster metadata (MetadataValue.md)
    files: list[Path] = field(default_factory=list)  # every file written, the page first


def write_reports(
    out_dir: str | Path,
    *,
    events: pa.Table,
    clusters: pa.Table | None = None,
    media: pa.Table | None = None,
    sites: pa.Table | None = None,
    site_species: pa.Table | None = None,
    crops: CropStore | None = None,
    audit: pa.Table | None = None,
    title: str = "Odins Ravne camera-trap report",
) -> dict[str, Report]:
    """The project report (key ``"project"``) and one report per camera (key: camera id).

    ``crops``: where the events' ``representative_crop_path`` can be read; without it, no pictures.
    ``audit``: the detector audit (:mod:`odins_ravne_assets.hugin.detector_audit`); a camera whose
    counts are lower bounds says so at the top of its page and of the project's.
    """
    out = Path(out_dir)
    reports = {"project": write_project_report(out, events=events, clusters=clusters, media=media,
                                               sites=sites, site_species=site_species, crops=crops, audit=audit,
                                               title=title)}
    cameras = sorted({c for t in (events, media) if t is not None for c in t.column("camera_id").to_pylist() if c})
    for camera in cameras:
        reports[camera] = write_camera_report(out / "cameras" / camera, camera, events=events, media=media,
                                              clusters=clusters, crops=crops, audit=audit)
    return reports


def write_project_report(
    out_dir: str | Path,
    *,
    events: pa.Table,
    clusters: pa.Table | None = None,
    media: pa.Table | None = None,
    sites: pa.Table | None = None,
    site_species: pa.Table | None = None,
    crops: CropStore | None = None,
    audit: pa.Table | None = None,
    title: str = "Odins Ravne camera-trap report",
) -> Report:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    evs = events.to_pylist()
    animal = [e for e in evs if e["category"] == "animal"]
    thumbs = Thumbnails(out, crops)
    files = [
        plot_species(animal, out / "species.png"),
        plot_activity(animal, out / "activity.png"),
        plot_timeline(animal, out / "timeline.png"),
    ]
    if clusters is not None:
        files.append(plot_sites(clusters.to_pylist(), evs, out / "sites.png"))

    cameras = sorted({e["camera_id"] for e in evs} | _cameras(media))
    facts = _facts(evs, media)
    audits = _audit_rows(audit)
    sections = [_audit_warning_html(audits), _facts_html(facts), _gallery_html(animal, thumbs), _species_table_html(animal)]
    sections.append(_figures_html([f.name for f in files]))
    if sites is not None:
        sections.append(_table_html(
            "Sites", ["site", "status", "cameras", "trap-nights", "animal events", "richness", "first seen", "last seen"],
            [[r["site_id"], r["status"], r["camera_ids"], _num(r["trap_nights"]), r["n_animal_events"],
              r["species_richness"], _when(r["first_seen"]), _when(r["last_seen"])] for r in sites.to_pylist()]))
    if site_species is not None and site_species.num_rows:
        sections.append(_table_html(
            "Detection rates per site", ["site", "species", "events", "per 100 trap-nights", "max count",
                                         "first seen", "last seen"],
            [[r["site_id"], r["species"], r["n_events"], _num(r["events_per_100_trap_nights"]),
              r["n_individuals_max"], _when(r["first_seen"]), _when(r["last_seen"])]
             for r in site_species.to_pylist()]))
    sections.append(_table_html(
        "Cameras", ["camera", "media", "failed", "animal events", "species", "report"],
        [[c, facts["media_by_camera"].get(c, 0), facts["failed_by_camera"].get(c, 0),
          sum(1 for e in animal if e["camera_id"] == c),
          len({e["species"] for e in animal if e["camera_id"] == c}),
          f'<a href="cameras/{html.escape(c)}/index.html">open</a>'] for c in cameras], raw_last=True))
    sections.append(_audit_table_html([r for r in audits if r["lighting"] == "all"], by="camera_id"))
    page = out / "index.html"
    _write_page(page, title, sections)
    markdown = _markdown(title, facts, animal, page, audits)
    (out / "report.md").write_text(markdown, encoding="utf-8")
    return Report(page, markdown, [page, out / "report.md", *files, *thumbs.files])


def write_camera_report(
    out_dir: str | Path,
    camera_id: str,
    *,
    events: pa.Table,
    media: pa.Table | None = None,
    clusters: pa.Table | None = None,
    crops: CropStore | None = None,
    audit: pa.Table | None = None,
) -> Report:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    evs = [e for e in events.to_pylist() if e["camera_id"] == camera_id]
    thumbs = Thumbnails(out, crops)
    mine = None
    if media is not None:
        mine = media.filter(pc.equal(media["camera_id"], camera_id))
    animal = [e for e in evs if e["category"] == "animal"]
    files = [
        plot_species(animal, out / "species.png"),
        plot_activity(animal, out / "activity.png"),
        plot_timeline(animal, out / "timeline.png"),
    ]
    facts = _facts(evs, mine)
    site = None
    if clusters is not None:
        site = next((r for r in clusters.to_pylist() if r["camera_id"] == camera_id), None)
    where = ""
    if site:
        loc = (f"{site['latitude']:.5f}, {site['longitude']:.5f}" if site["latitude"] is not None else "no GPS")
        where = f"<p>Site <b>{html.escape(site['site_id'])}</b> ({html.escape(site['status'])}), {loc}</p>"
    recent = sorted(evs, key=lambda e: (e["start"] is None, e["start"] or datetime.min))
    audits = [r for r in _audit_rows(audit) if r["camera_id"] == camera_id]
    sections = [
        _audit_warning_html(audits),
        where + _facts_html(facts),
        _gallery_html(animal, thumbs),
        _species_table_html(animal),
        _figures_html([f.name for f in files]),
        _table_html("Events", ["picture", "start", "end", "category", "species", "media", "max count", "best conf",
                               "representative"],
                    [[_event_picture_html(e, thumbs), _when(e["start"]), _when(e["end"]), e["category"],
                      e["species"] or "", e["n_media"], e["max_count"], _num(e["best_conf"]),
                      e["representative_file_path"] or ""] for e in recent], raw_columns={0}),
        _audit_table_html(audits, by="lighting"),
    ]
    page = out / "index.html"
    title = f"Camera {camera_id}"
    _write_page(page, title, sections, back="../../index.html")
    markdown = _markdown(title, facts, animal, page, audits)
    (out / "report.md").write_text(markdown, encoding="utf-8")
    return Report(page, markdown, [page, out / "report.md", *files, *thumbs.files])


# -- the detector audit -----------------------------------------------------------------------------

def _audit_rows(audit: pa.Table | None) -> list[dict]:
    return [] if audit is None else sorted(audit.to_pylist(), key=lambda r: (r["camera_id"], r["lighting"] == "all", r["lighting"]))


def _lower_bounds(audits: list[dict]) -> list[dict]:
    """The rows whose reviews say the counts miss animals; a camera's ``all`` row where it has one."""
    flagged = [r for r in audits if r["counts_status"] == "lower_bounds"]
    whole = {r["camera_id"] for r in flagged if r["lighting"] == "all"}
    return [r for r in flagged if r["lighting"] == "all" or r["camera_id"] not in whole]


def _audit_warning_html(audits: list[dict]) -> str:
    flagged = _lower_bounds(audits)
    if not flagged:
        return ""
    items = "".join(f"<li><b>{html.escape(r['camera_id'])}</b>"
                    f"{'' if r['lighting'] == 'all' else ' (' + html.escape(r['lighting']) + ')'}: "
                    f"{html.escape(r['note'])}</li>" for r in flagged)
    return ("<div class='warning'><b>Counts are lower bounds.</b> The reviews show animals that neither the detector "
            f"nor a review put in the counts (see the detector audit below):<ul>{items}</ul></div>")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def _audit_table_html(audits: list[dict], *, by: str) -> str:
    if not audits:
        return ""
    return _table_html(
        "Detector audit (from reviews)",
        ["camera" if by == "camera_id" else "lighting", "media", "positives", "negatives", "reviewed +", "confirmed",
         "reviewed -", "with an animal", "detector recall", "95 %", "detector", "counts hold", "95 %", "counts"],
        [[r[by], r["media"], r["positives"], r["negatives"], r["reviewed_positives"], r["confirmed_positives"],
          r["reviewed_negatives"], r["missed_negatives"], _pct(r["recall"]),
          f"{_pct(r['recall_low'])}-{_pct(r['recall_high'])}" if r["recall"] is not None else "", r["status"],
          _pct(r["completeness"]),
          f"{_pct(r['completeness_low'])}-{_pct(r['completeness_high'])}" if r["completeness"] is not None else "",
          r["counts_status"]]
         for r in audits])


# -- pictures --------------------------------------------------------------------------------------

class Thumbnails:
    """Small JPEG copies of crops in ``<page folder>/thumbs/``, each written once per size."""

    def __init__(self, page_dir: Path, crops: CropStore | None):
        self.dir, self.crops = page_dir / "thumbs", crops
        self.files: list[Path] = []
        self._made: dict[tuple[str, int], tuple[str, int, int] | None] = {}

    def get(self, crop_path: str | None, side: int) -> tuple[str, int, int] | None:
        """``(relative src, width, height)`` of the crop's thumbnail; None without a readable crop."""
        if not crop_path or self.crops is None:
            return None
        key = (crop_path, side)
        if key not in self._made:
            self._made[key] = self._make(crop_path, side)
        return self._made[key]

    def _make(self, crop_path: str, side: int) -> tuple[str, int, int] | None:
        try:
            if not self.crops.exists(crop_path):
                return None
            image = Image.open(io.BytesIO(self.crops.read_bytes(crop_path))).convert("RGB")
        except (OSError, UnidentifiedImageError):
            return None
        # A far-away animal makes a crop of a few dozen pixels: shown at the thumbnail's size, not as a speck.
        scale = side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)
        name = f"{hashlib.sha1(crop_path.encode()).hexdigest()[:16]}-{side}.jpg"
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / name
        image.save(path, "JPEG", quality=THUMB_QUALITY, optimize=True)
        self.files.append(path)
        return f"thumbs/{name}", image.width, image.height


def _caption(e: Mapping[str, Any]) -> str:
    return f"{e['species'] or 'animal'}, {_when(e['start']) or 'no time'}, {e['camera_id']}, conf {_num(e['best_conf'])}"


def _best_per_species(animal: list[dict], thumbs: Thumbnails) -> list[tuple[dict, tuple[str, int, int] | None]]:
    """Each species' most confident event whose crop can be shown (else its most confident event)."""
    by_species: dict[str, list[dict]] = defaultdict(list)
    for e in animal:
        by_species[e["species"] or "animal"].append(e)
    best = []
    for species in [r[0] or "animal" for r in _species_rows(animal)]:
        ranked = sorted(by_species[species], key=lambda e: (-(e["best_conf"] or 0.0), e["start"] is None,
                                                            e["start"] or datetime.min, e["event_id"] or ""))
        picked = next(((e, t) for e in ranked if (t := thumbs.get(e["representative_crop_path"], GALLERY_SIDE))),
                      (ranked[0], None))
        best.append(picked)
    return best


def _gallery_html(animal: list[dict], thumbs: Thumbnails) -> str:
    figures = []
    for e, thumb in _best_per_species(animal, thumbs):
        name = html.escape(e["species"] or "animal")
        science = f" <i>{html.escape(e['scientific_name'])}</i>" if e["scientific_name"] else ""
        when = html.escape(_when(e["start"]) or "no time")
        picture = (f"<img class='animal' src='{thumb[0]}' width='{thumb[1]}' height='{thumb[2]}' "
                   f"alt='{html.escape(_caption(e))}'>" if thumb else "<div class='nopic'>no picture</div>")
        figures.append(f"<figure class='species'>{picture}<figcaption><b>{name}</b>{science}<br>{when} &middot; "
                       f"{html.escape(e['camera_id'])} &middot; conf {_num(e['best_conf'])}</figcaption></figure>")
    if not figures:
        return ""
    return f"<h2>Animals</h2><div class='gallery'>{''.join(figures)}</div>"


def _event_picture_html(e: Mapping[str, Any], thumbs: Thumbnails) -> str:
    if e["category"] != "animal":
        return ""
    thumb = thumbs.get(e["representative_crop_path"], EVENT_SIDE)
    if not thumb:
        return ""
    # Lazy: a camera can have thousands of events; the browser fetches the rows scrolled to.
    return (f"<img class='event' loading='lazy' src='{thumb[0]}' width='{thumb[1]}' height='{thumb[2]}' "
            f"alt='{html.escape(_caption(e))}' title='{html.escape(_caption(e))}'>")


# -- facts and tables ------------------------------------------------------------------------------

def _cameras(media: pa.Table | None) -> set[str]:
    return set() if media is None else {c for c in media.column("camera_id").to_pylist() if c}


def _facts(evs: list[dict], media: pa.Table | None) -> dict[str, Any]:
    by_category = Counter(e["category"] for e in evs)
    times = [e["start"] for e in evs if e["start"] is not None]
    facts: dict[str, Any] = {
        "events": dict(sorted(by_category.items())),
        "species": len({e["species"] for e in evs if e["category"] == "animal"}),
        "first": min(times) if times else None,
        "last": max(times) if times else None,
        "media_by_camera": {}, "failed_by_camera": {}, "media": None, "failed": None, "failures": {},
    }
    if media is not None:
        rows = media.select([c for c in ("camera_id", "status", "failure") if c in media.column_names]).to_pylist()
        facts["media"] = len(rows)
        failed = [r for r in rows if r["status"] != "ok"]
        facts["failed"] = len(failed)
        facts["media_by_camera"] = dict(Counter(r["camera_id"] for r in rows))
        facts["failed_by_camera"] = dict(Counter(r["camera_id"] for r in failed))
        facts["failures"] = dict(Counter((r.get("failure") or "unknown").split(":")[0] for r in failed).most_common(5))
    return facts


def _facts_html(facts: Mapping[str, Any]) -> str:
    items = []
    if facts["media"] is not None:
        items.append(f"<li><b>{facts['media']}</b> media, <b>{facts['failed']}</b> failed</li>")
    counts = ", ".join(f"{n} {html.escape(k)}" for k, n in facts["events"].items()) or "none"
    items.append(f"<li>Events: {counts}</li>")
    items.append(f"<li><b>{facts['species']}</b> animal species</li>")
    if facts["first"]:
        items.append(f"<li>From {_when(facts['first'])} to {_when(facts['last'])}</li>")
    if facts["failures"]:
        reasons = ", ".join(f"{html.escape(k)} ({n})" for k, n in facts["failures"].items())
        items.append(f"<li>Failures: {reasons}</li>")
    return "<ul class='facts'>" + "".join(items) + "</ul>"


def _species_rows(animal: list[dict]) -> list[list[Any]]:
    by_species: dict[str, list[dict]] = defaultdict(list)
    for e in animal:
        by_species[e["species"]].append(e)
    rows = []
    for species, evs in sorted(by_species.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        rows.append([species, next((e["scientific_name"] for e in evs if e["scientific_name"]), "") or "",
                     len(evs), max(e["max_count"] or 0 for e in evs), len({e["camera_id"] for e in evs})])
    return rows


def _species_table_html(animal: list[dict]) -> str:
    rows = [[r[0], f"<i>{html.escape(r[1])}</i>", r[2], r[3], r[4]] for r in _species_rows(animal)]
    return _table_html("Species", ["species", "scientific name", "events", "max count", "cameras"], rows,
                       raw_columns={1})


def _table_html(title: str, header: list[str], rows: Iterable[list[Any]], *, raw_last: bool = False,
                raw_columns: set[int] | None = None) -> str:
    raw = set(raw_columns or ())
    if raw_last:
        raw.add(len(header) - 1)
    body = []
    for row in rows:
        cells = [(str(v) if i in raw else html.escape("" if v is None else str(v))) for i, v in enumerate(row)]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if not body:
        return f"<h2>{html.escape(title)}</h2><p class='empty'>Nothing yet.</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"<h2>{html.escape(title)}</h2><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figures_html(names: list[str]) -> str:
    captions = {"species.png": "Events per species", "activity.png": "Activity by hour of day",
                "timeline.png": "Events over time", "sites.png": "Sites"}
    # The plots carry their own titles: the alt text is for screen readers and broken images.
    figs = "".join(f"<figure><img src='{html.escape(n)}' alt='{captions.get(n, n)}'></figure>" for n in names)
    return f"<div class='figures'>{figs}</div>"


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.3rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}th,td{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:left}
th{background:#f4f4f4}.figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:1rem}
figure{margin:0}img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85rem;color:#555}
.facts li{margin:.15rem 0}.empty{color:#888}.meta{color:#777;font-size:.85rem}
.gallery{display:flex;flex-wrap:wrap;gap:.8rem}.gallery figure{width:240px}
.gallery img{display:block;max-width:240px;height:auto;border-radius:3px}
.gallery figcaption{margin-top:.2rem;line-height:1.3}
.nopic{width:240px;height:80px;display:flex;align-items:center;justify-content:center;background:#f4f4f4;color:#888}
img.event{display:block;max-height:90px;width:auto;border:0}
.warning{background:#fff4e5;border-left:4px solid #e67e22;padding:.4rem .8rem;margin:1rem 0}
"""


def _write_page(path: Path, title: str, sections: list[str], back: str | None = None) -> None:
    nav = f"<p><a href='{back}'>&larr; project report</a></p>" if back else ""
    generated = datetime.now().strftime("%Y-%m-%d %H:%M")
    text = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{nav}<h1>{html.escape(title)}</h1>"
            f"<p class='meta'>Generated {generated} by Odins Ravne (Hugin)</p>{''.join(sections)}</body></html>")
    path.write_text(text, encoding="utf-8")


def _markdown(title: str, facts: Mapping[str, Any], animal: list[dict], page: Path,
              audits: list[dict] | None = None) -> str:
    lines = [f"### {title}", ""]
    for r in _lower_bounds(audits or []):
        where = "" if r["lighting"] == "all" else f" ({r['lighting']})"
        lines.append(f"- **counts are lower bounds** for {r['camera_id']}{where}: {r['note']}")
    if facts["media"] is not None:
        lines.append(f"- {facts['media']} media, {facts['failed']} failed")
    lines.append("- events: " + (", ".join(f"{n} {k}" for k, n in facts["events"].items()) or "none"))
    if facts["first"]:
        lines.append(f"- from {_when(facts['first'])} to {_when(facts['last'])}")
    # Relative to report.md, which sits beside the page: the folder is written in a temporary place and
    # copied to the output root, so an absolute path would name a folder that no longer exists.
    lines.append(f"- report: [{page.name}]({page.name})")
    rows = _species_rows(animal)
    if rows:
        lines += ["", "| species | events | max count | cameras |", "|---|---:|---:|---:|"]
        lines += [f"| {r[0]} | {r[2]} | {r[3]} | {r[4]} |" for r in rows[:15]]
    return "\n".join(lines) + "\n"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"
