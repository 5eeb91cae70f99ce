"""The reports' plots, drawn with matplotlib (Agg backend, no tiles, no network): events per
species, activity by hour of day, events over time, and a map of sites in a local metric
projection (equirectangular, scaled by cos(latitude): fine over the few tens of kilometres a camera
grid spans). Each takes the animal events (or the clusters) as rows and writes one PNG.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: reports render in worker processes without a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from odins_ravne_assets.hugin.clusters import EARTH_RADIUS_M  # noqa: E402

TOP_SPECIES = 8  # species drawn separately in stacked plots; the rest are "other"
COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#1f78b4", "#999999"]


def _top_species(animal: list[dict]) -> list[str]:
    counts = Counter(e["species"] for e in animal)
    return [s for s, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_SPECIES]]


def _group(species: str, top: list[str]) -> str:
    return species if species in top else "other"


def _stacked_species_bars(ax, timed: list[dict], top: list[str], key, positions: list, **bar_options) -> None:
    """Events counted per ``key(start)`` at each of ``positions``, one stacked bar per position with
    a layer per species group (the ``top`` species, then "other"); y-axis headroom for the legend."""
    totals = [0] * len(positions)
    groups = top + (["other"] if any(e["species"] not in top for e in timed) else [])
    for i, group in enumerate(groups):
        counts = Counter(key(e["start"]) for e in timed if _group(e["species"], top) == group)
        values = [counts.get(position, 0) for position in positions]
        ax.bar(positions, values, bottom=totals, color=COLORS[i % len(COLORS)], label=group, **bar_options)
        totals = [total + value for total, value in zip(totals, values)]
    ax.set_ylim(0, max(totals) * 1.3 + 0.5)


def _empty(ax, text: str = "no animal events yet") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", color="#888", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_species(animal: list[dict], path: Path) -> Path:
    counts = Counter(e["species"] for e in animal)
    items = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))[-20:]
    fig, ax = plt.subplots(figsize=(6.4, max(2.4, 0.35 * len(items) + 1.2)))
    if items:
        ax.barh([k for k, _ in items], [v for _, v in items], color=COLORS[0])
        for i, (_, v) in enumerate(items):
            ax.text(v, i, f" {v}", va="center", fontsize=8)
        ax.set_xlabel("events")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.spines[["top", "right"]].set_visible(False)
    else:
        _empty(ax)
    ax.set_title("Events per species")
    return _save(fig, path)


def plot_activity(animal: list[dict], path: Path) -> Path:
    top = _top_species(animal)[:5]
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    timed = [e for e in animal if e["start"] is not None]
    if timed:
        _stacked_species_bars(ax, timed, top, lambda t: t.hour, list(range(24)), width=0.85)
        ax.set_xticks(range(0, 24, 3))
        ax.set_xlim(-0.6, 23.6)
        ax.set_xlabel("hour of day (camera local time)")
        ax.set_ylabel("events")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7, ncol=3, frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
    else:
        _empty(ax)
    ax.set_title("Activity by hour of day")
    return _save(fig, path)


def plot_timeline(animal: list[dict], path: Path) -> Path:
    import matplotlib.dates as mdates

    top = _top_species(animal)[:5]
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    timed = [e for e in animal if e["start"] is not None]
    if timed:
        first, last = min(e["start"] for e in timed), max(e["start"] for e in timed)
        # Bins that keep a readable number of bars: hours for a few days, days up to two months, weeks.
        span_days = (last - first).total_seconds() / 86400
        unit, bin_days = ("hour", 1 / 24) if span_days <= 3 else ("day", 1.0) if span_days <= 60 else ("week", 7.0)

        def bucket(t: datetime) -> datetime:
            if unit == "hour":
                return t.replace(minute=0, second=0, microsecond=0)
            day = t.replace(hour=0, minute=0, second=0, microsecond=0)
            return day - timedelta(days=day.weekday()) if unit == "week" else day  # weeks start on Monday

        bins = sorted({bucket(e["start"]) for e in timed})
        _stacked_species_bars(ax, timed, top, bucket, bins, width=0.85 * bin_days, align="edge")
        # A little room either side, so a single bar is not stretched across the whole axis.
        ax.set_xlim(bins[0] - timedelta(days=bin_days), bins[-1] + timedelta(days=2 * bin_days))
        locator = mdates.AutoDateLocator(maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"events per {unit}")
        ax.legend(fontsize=7, ncol=3, frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
    else:
        _empty(ax)
    ax.set_title("Events over time")
    return _save(fig, path)


def plot_sites(clusters: list[dict], evs: list[dict], path: Path) -> Path:
    located = [c for c in clusters if c["latitude"] is not None]
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    if not located:
        _empty(ax, "no camera has GPS")
        ax.set_title("Sites")
        return _save(fig, path)
    lat0 = sum(c["latitude"] for c in located) / len(located)
    lon0 = sum(c["longitude"] for c in located) / len(located)
    k = math.pi / 180 * EARTH_RADIUS_M / 1000.0  # km per degree of latitude

    def xy(c: dict) -> tuple[float, float]:
        return (c["longitude"] - lon0) * k * math.cos(math.radians(lat0)), (c["latitude"] - lat0) * k

    events_per_camera = Counter(e["camera_id"] for e in evs if e["category"] == "animal")
    sites = sorted({c["site_id"] for c in located})
    for i, site in enumerate(sites):
        members = [c for c in located if c["site_id"] == site]
        pts = [xy(c) for c in members]
        sizes = [30 + 12 * math.sqrt(events_per_camera.get(c["camera_id"], 0)) for c in members]
        noise = members[0]["status"] == "noise"
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=sizes, color=COLORS[i % len(COLORS)],
                   marker="x" if noise else "o", alpha=0.85, label=f"{site}{' (noise)' if noise else ''}")
        cx, cy = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
        ax.annotate(site, (cx, cy), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.margins(0.15)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("km east of centre")
    ax.set_ylabel("km north of centre")
    missing = [c["camera_id"] for c in clusters if c["latitude"] is None]
    note = f"centre {lat0:.4f}, {lon0:.4f}; marker size ~ animal events"
    if missing:
        note += f"; no GPS: {', '.join(missing[:6])}{'...' if len(missing) > 6 else ''}"
    ax.text(0.01, 0.01, note, transform=ax.transAxes, fontsize=7, color="#555")
    if len(sites) <= 12:
        ax.legend(fontsize=7, frameon=True, framealpha=0.85, loc="best")
    ax.grid(True, color="#eee")
    ax.set_title("Sites")
    return _save(fig, path)
