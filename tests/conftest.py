"""Shared fixtures: a small real input (photographs shipped inside installed packages), a private
Dagster instance per test session, and a moto S3 server for the S3 paths."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

import ultralytics

ASSETS = Path(ultralytics.__file__).parent / "assets"


def write_jpeg(src: Path, dest: Path, *, when: str | None = None, gps: tuple[float, float] | None = None, scale: float = 1.0) -> Path:
    """Re-encode a photograph with the EXIF time and GPS a camera trap would write."""
    image = Image.open(src).convert("RGB")
    if scale != 1.0:
        image = image.resize((int(image.width * scale), int(image.height * scale)))
    exif = Image.Exif()
    if when:
        exif.get_ifd(0x8769)[0x9003] = when  # DateTimeOriginal
    if gps:
        lat, lon = gps
        def dms(value):
            value = abs(value)
            d = int(value)
            m = int((value - d) * 60)
            return (float(d), float(m), round(((value - d) * 60 - m) * 60, 2))
        exif.get_ifd(0x8825).update({1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W", 4: dms(lon)})
    dest.parent.mkdir(parents=True, exist_ok=True)
    image.save(dest, "JPEG", quality=90, exif=exif)
    return dest


@pytest.fixture(scope="session")
def small_input(tmp_path_factory) -> Path:
    """Two cameras: people and a bus in a burst, plus the broken files a card really holds."""
    root = tmp_path_factory.mktemp("input")
    for i, second in enumerate((0, 2, 4)):
        write_jpeg(ASSETS / "bus.jpg", root / "cam-a" / f"IMG_{i:04d}.JPG", when=f"2026:06:01 05:30:{second:02d}", gps=(60.1, 18.2), scale=0.7)
    write_jpeg(ASSETS / "zidane.jpg", root / "cam-b" / "IMG_0001.JPG", when="2026:06:02 12:00:00", gps=(60.1003, 18.2004), scale=0.7)
    write_jpeg(ASSETS / "zidane.jpg", root / "cam-b" / "no_exif.jpg", scale=0.5)
    (root / "cam-b" / "empty.jpg").write_bytes(b"")
    (root / "cam-b" / "notes.jpg").write_text("this is a text file, not a JPEG")
    data = (ASSETS / "bus.jpg").read_bytes()
    (root / "cam-b" / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (root / "cam-b" / "readme.txt").write_text("not media: ignored")
    return root


@pytest.fixture(scope="session")
def dagster_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copyfile(Path(__file__).resolve().parent.parent / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def processed(small_input, dagster_home, tmp_path_factory):
    """The small input processed once through the CLI (all assets, real model): (input, output)."""
    from odins_ravne_assets.cli import main

    output = tmp_path_factory.mktemp("output")
    assert main(["process", str(small_input), "--out", str(output), "--quiet"]) == 0
    return small_input, output
