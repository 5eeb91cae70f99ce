"""Photographs for tests: real ones shipped inside a package, written with the EXIF a camera trap would."""

from __future__ import annotations

from pathlib import Path

import ultralytics
from PIL import Image

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
