"""What the sample cameras are and what they saw, rendered as the files a card holds.

``CAMERAS`` are the five cameras (make, model, GPS as each receiver writes it, the scene it looks
at) and ``EVENTS`` the triggers, in time order per camera: bursts of 2-5 frames a second or a few
apart (the animal moves, the light changes a little), empty frames (wind, light), one MP4. The
functions below turn one event into JPEGs with the camera's EXIF, an MP4 with its metadata, and
``broken_files`` into what a card also holds: truncated, empty and mislabelled files, a
decompression bomb, a video without frames, a photo without EXIF and a note.
"""

from __future__ import annotations

import io
import logging
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
from PIL import ExifTags, Image, ImageEnhance
from PIL.TiffImagePlugin import IFDRational

from odins_ravne_assets.sample_data.sources import Photos


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


EVENTS: tuple[Event, ...] = (
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

VIDEO_SIZE = (640, 360)
VIDEO_FPS = 10
VIDEO_SECONDS = 4
_JPEG_QUALITY = 85


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


def _scene(camera: Camera, photos: Photos, rng: np.random.Generator) -> Image.Image:
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


def frames(camera: Camera, event: Event, photos: Photos, rng: np.random.Generator) -> Iterator[Image.Image]:
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


def jpeg_bytes(image: Image.Image, exif: Image.Exif | None) -> bytes:
    buffer = io.BytesIO()
    kwargs: dict[str, Any] = {"exif": exif} if exif is not None else {}
    image.convert("RGB").save(buffer, "JPEG", quality=_JPEG_QUALITY, optimize=True, **kwargs)
    return buffer.getvalue()


def _rational_dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = Fraction(round(((value - degrees) * 60 - minutes) * 60 * 1000), 1000)
    return IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(seconds.numerator, seconds.denominator)


def exif_for(camera: Camera, taken: datetime) -> Image.Exif:
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


def video_bytes(camera: Camera, event: Event, photos: Photos) -> bytes:
    """A few seconds panning across the scene with the animal in it, as an MP4 with its metadata."""
    rng = np.random.default_rng(1000)
    # A scene three frames wide; the camera's 16:9 window pans across two thirds of it.
    window = (VIDEO_SIZE[0] * 2, VIDEO_SIZE[1] * 2)
    scene = _cover(photos.get(camera.scene), (window[0] * 3 // 2, window[1]))
    _paste_animal(scene, photos.get(event.subject), event, event.x0)
    n_frames = VIDEO_FPS * VIDEO_SECONDS
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
            str(path), VIDEO_SIZE, fps=VIDEO_FPS, quality=6, macro_block_size=8,
            output_params=params, ffmpeg_log_level="error",
        )
        writer.send(None)
        for i in range(n_frames):
            left = round((scene.width - window[0]) * i / (n_frames - 1))
            box = (left, 0, left + window[0], window[1])
            frame = scene.resize(VIDEO_SIZE, Image.Resampling.BILINEAR, box=box)
            frame = ImageEnhance.Brightness(frame).enhance(1.0 + 0.02 * float(rng.normal()))
            writer.send(np.asarray(frame.convert("RGB")))
        writer.close()
        return path.read_bytes()


def _empty_video_bytes() -> bytes:
    """An MP4 the camera closed before writing a single frame: a container with no video stream."""
    with tempfile.TemporaryDirectory(prefix="odins-ravne-video-") as tmp:
        path = Path(tmp) / "empty.mp4"
        params = ["-metadata", f"creation_time={BROKEN_TIME:%Y-%m-%dT%H:%M:%S}.000000Z"]
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


@dataclass(frozen=True)
class OddFile:
    """A file on a card that is not a plain trigger frame: what its truth row says it is, and why."""

    name: str
    data: bytes
    kind: str  # "broken" (the pipeline must record a failure) | "no_exif" | "ignored" (not media)
    note: str
    label: str | None = None


BROKEN_CAMERA = "cam-zero-01"
BROKEN_TIME = _t(2, "20:00:00")


def broken_files(photos: Photos) -> list[OddFile]:
    """What ``BROKEN_CAMERA``'s card holds besides its triggers, all written at ``BROKEN_TIME``."""
    camera = next(c for c in CAMERAS if c.camera_id == BROKEN_CAMERA)
    rng = np.random.default_rng(99)
    frame = _scene(camera, photos, rng)
    whole = jpeg_bytes(frame, exif_for(camera, BROKEN_TIME))
    no_exif = _scene(camera, photos, rng)
    boar = next(event for event in EVENTS if event.subject == "wildboar.png")
    _paste_animal(no_exif, photos.get(boar.subject), boar, 0.5)
    return [
        OddFile("IMG_0090.JPG", whole[: len(whole) * 6 // 10], "broken", "truncated JPEG (the card was pulled mid-write)"),
        OddFile("IMG_0091.JPG", b"", "broken", "empty file"),
        OddFile("IMG_0092.JPG", b"SD card log: battery 12%, 3 triggers skipped\n", "broken", "text file named .JPG"),
        OddFile("IMG_0093.PNG", _bomb_png(100_000, 100_000), "broken", "decompression bomb (PNG header claims 100000x100000)"),
        OddFile("VID_0094.MP4", _empty_video_bytes(), "broken", "video with no frames"),
        OddFile("IMG_0095.JPG", jpeg_bytes(no_exif, None), "no_exif", "valid photo without EXIF (time from file mtime)", boar.label),
        OddFile("CAMERA_NOTES.TXT", b"cam-zero-01: GPS never got a fix at this site.\n", "ignored", "not media (ignored)"),
    ]
