"""Shared fixtures: the sample cameras of `make demo` processed once, a private Dagster instance per
test session, and a helper that writes a photograph with the EXIF a camera trap would."""

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
def dagster_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copyfile(Path(__file__).resolve().parent.parent / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def sample_cards(tmp_path_factory):
    """The sample cameras `make demo` processes: (folder, summary with the truth for every file)."""
    from odins_ravne_assets.sample_data import build_sample_data

    root = tmp_path_factory.mktemp("sample_data")
    return root, build_sample_data(root)


@pytest.fixture(scope="session")
def processed(sample_cards, dagster_home, tmp_path_factory):
    """The sample cameras processed once through the CLI (all assets, real model): (input, output)."""
    from odins_ravne_assets.cli import main

    output = tmp_path_factory.mktemp("output")
    assert main(["process", str(sample_cards[0]), "--out", str(output), "--quiet"]) == 0
    return sample_cards[0], output
