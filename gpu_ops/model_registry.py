"""Models by name: the releases camera-trap users run, fetched once into the model cache.

A profile can name a release (``pipeline.stage1.model: megadetector-v5a``) instead of a path.
:func:`resolve_model` returns the cached file (a detector checkpoint) or folder (a release shipped as
an archive, e.g. a SpeciesNet model folder), fetching it on first use into
``weights.default_model_dir()/<name>/`` under ``weights.cache_lock``. A download streams into a
hidden temporary file (``fileio.atomic_fill``) and is renamed into place only when it is complete and
its sha256 is right, so the cache never holds a partial or wrong file. Where the network is not
reachable, one line says which file to put where and the URL to fetch it from elsewhere.

Digests. A release with a published sha256 is checked against it on every fetch and every use. For
releases whose sha256 could not be confirmed from a primary source when this table was written
(``sha256=None``), the cache trusts on first use, explicitly: the digest of the first complete
download (its length must match the server's Content-Length, so a truncated body is never pinned),
or of a file a user put in place by hand, is written to ``<file>.sha256`` beside it, and every later
use is checked against that pin. ``odins-ravne models list`` shows which digest is published and
which was pinned on first fetch.

MegaDetector formats. v5a/v5b and the v1000 family's ``redwood`` (YOLOv5x6, 1280 px) and ``spruce``
(YOLOv5s, 640 px) are YOLOv5 checkpoints (``yolov5`` format); ``larch``, ``sorrel`` and the v6
checkpoints are ultralytics ones. ``cedar`` (YOLOv9 from its own repository's code) is left out:
no installable package here loads that format. A named release runs at its ``input_size`` (what it
was trained at); ``image_size`` in a profile applies to the default model and to files named by path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from gpu_ops.fileio import atomic_fill, atomic_write, sha256_file
from gpu_ops.weights import cache_lock, default_model_dir

log = logging.getLogger("gpu_ops")

MEGADETECTOR_CLASSES = ("animal", "person", "vehicle")
FETCH_TIMEOUT_S = 60.0
_CHUNK = 1 << 20
# The marker written last into an extracted release folder: present means complete.
RELEASE_MARKER = ".release.json"
TOFU = "pinned on first verified fetch"


class ModelUnavailable(RuntimeError):
    """A named model is not in the cache and could not be fetched, or its file failed its check."""


@dataclass(frozen=True)
class ModelRelease:
    name: str
    url: str
    filename: str  # the file's published name: what a user downloads by hand and puts in place
    format: str  # yolov5 | ultralytics | speciesnet (a model folder)
    input_size: int
    classes: tuple[str, ...]
    sha256: str | None = None  # None: trust on first use (see the module docstring)
    archive: bool = False  # a .tar.gz / .zip extracted into a folder
    approx_mb: float | None = None  # as published; shown, never checked
    description: str = ""

    def target(self, model_dir: Path | None = None) -> Path:
        """Where the release lives in the cache: the file, or the folder an archive extracts into."""
        folder = (model_dir or default_model_dir()) / self.name
        return folder / "model" if self.archive else folder / self.filename

    @property
    def digest_source(self) -> str:
        return "published" if self.sha256 else TOFU


_MD5 = "https://github.com/agentmorris/MegaDetector/releases/download/v5.0/"
_MD1000 = "https://github.com/agentmorris/MegaDetector/releases/download/v1000.0/"
_MD6 = "https://zenodo.org/records/15398270/files/"
# Kaggle's public model download (what kagglehub fetches): a .tar.gz of the model folder.
_SPECIESNET = "https://www.kaggle.com/api/v1/models/google/speciesnet/pyTorch/"


def _md(name: str, url: str, filename: str, fmt: str, size: int, mb: float, description: str) -> ModelRelease:
    return ModelRelease(name, url, filename, fmt, size, MEGADETECTOR_CLASSES, approx_mb=mb, description=description)


KNOWN_MODELS: dict[str, ModelRelease] = {
    release.name: release
    for release in (
        _md("megadetector-v5a", _MD5 + "md_v5a.0.0.pt", "md_v5a.0.0.pt", "yolov5", 1280, 281,
            "MegaDetector v5a, YOLOv5x6; the most used MegaDetector"),
        _md("megadetector-v5b", _MD5 + "md_v5b.0.0.pt", "md_v5b.0.0.pt", "yolov5", 1280, 281,
            "MegaDetector v5b, YOLOv5x6, trained on a different data mix than v5a"),
        _md("megadetector-v1000-redwood", _MD1000 + "md_v1000.0.0-redwood.pt", "md_v1000.0.0-redwood.pt", "yolov5",
            1280, 268, "MegaDetector v1000 redwood, YOLOv5x6: the most accurate v1000"),
        _md("megadetector-v1000-spruce", _MD1000 + "md_v1000.0.0-spruce.pt", "md_v1000.0.0-spruce.pt", "yolov5",
            640, 14, "MegaDetector v1000 spruce, YOLOv5s: the fastest v1000"),
        _md("megadetector-v1000-larch", _MD1000 + "md_v1000.0.0-larch.pt", "md_v1000.0.0-larch.pt", "ultralytics",
            640, 120, "MegaDetector v1000 larch, YOLO11l (ultralytics)"),
        _md("megadetector-v1000-sorrel", _MD1000 + "md_v1000.0.0-sorrel.pt", "md_v1000.0.0-sorrel.pt", "ultralytics",
            640, 30, "MegaDetector v1000 sorrel, YOLO11s (ultralytics)"),
        _md("megadetector-v6-yolov9-c", _MD6 + "MDV6-yolov9-c.pt?download=1", "MDV6-yolov9-c.pt", "ultralytics",
            640, 51.6, "MegaDetector v6 (Pytorch-Wildlife), YOLOv9-c (ultralytics)"),
        _md("megadetector-v6-yolov10-c", _MD6 + "MDV6-yolov10-c.pt?download=1", "MDV6-yolov10-c.pt", "ultralytics",
            640, 5.8, "MegaDetector v6 (Pytorch-Wildlife), YOLOv10-c (ultralytics, NMS-free)"),
        *(ModelRelease(f"speciesnet-{version}", f"{_SPECIESNET}{version}/1/download", f"speciesnet-{version}.tar.gz",
                       "speciesnet", 480, (), archive=True,
                       description=f"SpeciesNet {version} (always_crop, EfficientNetV2-M): species, geofence, rollup")
          for version in ("v4.0.1a", "v4.0.3a")),
    )
}


def resolve_model(name_or_path: str, *, fetch: bool = True, model_dir: Path | None = None) -> Path:
    """The local file (or folder) for a known release's name, fetched on first use; or a path as given.

    ``fetch=False`` never touches the network: a release not in the cache raises
    :class:`ModelUnavailable` with the line that says where to put it.
    """
    release = KNOWN_MODELS.get(name_or_path)
    if release is None:
        path = Path(name_or_path).expanduser()
        if not path.exists():
            known = ", ".join(sorted(KNOWN_MODELS))
            raise ModelUnavailable(f"model {name_or_path!r} is neither a file or folder nor a known release ({known})")
        return path
    return ensure_release(release, fetch=fetch, model_dir=model_dir)


def ensure_release(release: ModelRelease, *, fetch: bool = True, model_dir: Path | None = None) -> Path:
    """The release's checked path in the cache, fetched (once, across processes) when missing or bad."""
    root = model_dir or default_model_dir()
    target = release.target(root)
    problem = cached_problem(release, root)
    if problem is None:
        return target
    if not fetch:
        raise ModelUnavailable(f"{release.name}: {problem}; {placement_hint(release, root)}")
    with cache_lock(root):
        problem = cached_problem(release, root)  # another process may have fetched it meanwhile
        if problem is None:
            return target
        if problem != "not cached":
            log.warning("%s: the cached copy is unusable (%s): fetching it again", release.name, problem)
        _fetch(release, root)
    return target


def cached_problem(release: ModelRelease, model_dir: Path | None = None) -> str | None:
    """What is wrong with the cached copy (``"not cached"`` when absent); None when it is good.

    A file put in place by hand for a release without a published digest is pinned here (trust on
    first use).
    """
    root = model_dir or default_model_dir()
    target = release.target(root)
    if release.archive:
        marker = target / RELEASE_MARKER
        if not marker.is_file():
            return "not cached"
        recorded = json.loads(marker.read_text()).get("sha256")
        if release.sha256 and recorded != release.sha256:
            return f"extracted from an archive with sha256 {str(recorded)[:12]}..., expected {release.sha256[:12]}..."
        return None
    if not target.is_file():
        return "not cached"
    digest = sha256_file(target)
    expected = release.sha256 or _pinned(target)
    if expected is None:
        atomic_write(_pin_path(target), (digest + "\n").encode())
        log.warning("%s: %s has no published sha256; trusting it and pinning %s... (%s)",
                    release.name, target, digest[:12], TOFU)
        return None
    if digest != expected:
        return f"{target.name} has sha256 {digest[:12]}..., expected {expected[:12]}..."
    return None


def pinned_digest(release: ModelRelease, model_dir: Path | None = None) -> str | None:
    """The digest the cache checks the release against: the published one, else the first-use pin."""
    if release.sha256:
        return release.sha256
    target = release.target(model_dir)
    if release.archive:
        marker = target / RELEASE_MARKER
        return json.loads(marker.read_text()).get("sha256") if marker.is_file() else None
    return _pinned(target)


def placement_hint(release: ModelRelease, model_dir: Path | None = None) -> str:
    target = release.target(model_dir)
    if release.archive:
        return f"fetch {release.url} elsewhere and extract it into {target}/ (with a {RELEASE_MARKER} file)"
    return f"fetch {release.url} elsewhere and put it at {target}"


def _pin_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _pinned(target: Path) -> str | None:
    pin = _pin_path(target)
    return pin.read_text().strip() or None if pin.is_file() else None


def _fetch(release: ModelRelease, root: Path) -> None:
    target = release.target(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("fetching %s from %s", release.name, release.url)
    if not release.archive:
        digest = _download(release, target, root)
        if release.sha256 is None:
            atomic_write(_pin_path(target), (digest + "\n").encode())
        log.info("%s ready at %s (sha256 %s..., %s)", release.name, target, digest[:12], release.digest_source)
        return
    # The staging folder is a sibling of the target so the final rename stays on one filesystem.
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as staging_name:
        staging = Path(staging_name)
        archive = staging / release.filename
        digest = _download(release, archive, root)
        extracted = staging / "model"
        _extract(archive, extracted, release)
        atomic_write(extracted / RELEASE_MARKER, json.dumps({"name": release.name, "url": release.url, "sha256": digest}).encode())
        if target.exists():
            target.rename(staging / "stale")  # the bad copy stays until the good one is in place
        extracted.rename(target)
    log.info("%s extracted into %s (archive sha256 %s..., %s)", release.name, target, digest[:12], release.digest_source)


def _download(release: ModelRelease, destination: Path, root: Path) -> str:
    """Stream the release into ``destination`` atomically; returns its sha256. Nothing is left on failure."""
    digest = hashlib.sha256()

    def fill(handle) -> None:
        request = urllib.request.Request(release.url, headers={"User-Agent": "odins-ravne"})
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            if length is None and release.sha256 is None:
                raise ModelUnavailable(
                    f"{release.name}: the server sent no Content-Length, so a truncated download could not be told "
                    f"from a whole one and there is no published sha256 to check; {placement_hint(release, root)}"
                )
            received = 0
            while block := response.read(_CHUNK):
                handle.write(block)
                digest.update(block)
                received += len(block)
            if length is not None and received != int(length):
                raise ModelUnavailable(f"{release.name}: the download stopped after {received} of {length} bytes; try again")
        if release.sha256 and digest.hexdigest() != release.sha256:
            raise ModelUnavailable(
                f"{release.name}: the file from {release.url} has sha256 {digest.hexdigest()[:12]}..., "
                f"expected {release.sha256[:12]}...: not cached; check the URL or fetch it by hand"
            )

    try:
        atomic_fill(destination, fill)
    except ModelUnavailable:
        raise
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ModelUnavailable(
            f"{release.name} is not cached and could not be fetched ({type(exc).__name__}: {reason}); "
            f"{placement_hint(release, root)}"
        ) from exc
    return digest.hexdigest()


def _extract(archive: Path, into: Path, release: ModelRelease) -> None:
    """Extract a .tar.gz / .zip; a single top-level folder is unwrapped, so the model files sit in ``into``."""
    unpacked = into.with_name("unpacked")
    unpacked.mkdir()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as handle:
                for member in handle.namelist():
                    if member.startswith("/") or ".." in Path(member).parts:
                        raise ModelUnavailable(f"{release.name}: the archive holds an unsafe path {member!r}")
                handle.extractall(unpacked)
        else:
            with tarfile.open(archive) as handle:
                handle.extractall(unpacked, filter="data")  # refuses absolute paths, '..' and links out
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise ModelUnavailable(f"{release.name}: {archive.name} is not a readable archive ({exc})") from exc
    entries = [entry for entry in unpacked.iterdir() if not entry.name.startswith(".")]
    source = entries[0] if len(entries) == 1 and entries[0].is_dir() else unpacked
    shutil.move(str(source), str(into))
    if os.path.exists(unpacked):
        shutil.rmtree(unpacked)
