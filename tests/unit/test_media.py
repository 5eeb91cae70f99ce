"""Media ingest: EXIF and video metadata round trips, and every kind of bad file a card can hold."""

from __future__ import annotations

import hashlib
import math
import os
import struct
import subprocess
import zlib
from datetime import datetime, timezone
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pyarrow as pa
import pytest
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

from gpu_ops import media, schemas

MTIME = 1_714_545_000  # 2024-05-01 06:30:00 UTC


def _pixels(width: int = 320, height: int = 240, seed: int = 0) -> Image.Image:
    # Smooth gradients plus noise: compresses like a photo, decodes the same on every machine.
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1)
    noise = rng.integers(0, 32, size=(height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def _dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = round(((value - degrees) * 60 - minutes) * 60 * 10_000)
    return IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(seconds, 10_000)


def _exif(
    *,
    original: str | None = None,
    digitized: str | None = None,
    datetime_ifd0: str | None = None,
    subsec: str | None = None,
    gps: dict[int, object] | None = None,
    make: str | None = None,
    model: str | None = None,
    orientation: int | None = None,
) -> Image.Exif:
    exif = Image.Exif()
    if make:
        exif[ExifTags.Base.Make] = make
    if model:
        exif[ExifTags.Base.Model] = model
    if datetime_ifd0:
        exif[ExifTags.Base.DateTime] = datetime_ifd0
    if orientation:
        exif[ExifTags.Base.Orientation] = orientation
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    if original:
        sub[ExifTags.Base.DateTimeOriginal] = original
    if digitized:
        sub[ExifTags.Base.DateTimeDigitized] = digitized
    if subsec:
        sub[ExifTags.Base.SubsecTimeOriginal] = subsec
    if gps:
        exif.get_ifd(ExifTags.IFD.GPSInfo).update(gps)
    return exif


def _gps(lat: float, lon: float) -> dict[int, object]:
    return {
        ExifTags.GPS.GPSLatitudeRef: "N" if lat >= 0 else "S",
        ExifTags.GPS.GPSLatitude: _dms(abs(lat)),
        ExifTags.GPS.GPSLongitudeRef: "E" if lon >= 0 else "W",
        ExifTags.GPS.GPSLongitude: _dms(abs(lon)),
    }


def _jpeg(path: Path, exif: Image.Exif | None = None, size: tuple[int, int] = (320, 240)) -> Path:
    kwargs = {"exif": exif} if exif is not None else {}
    _pixels(*size).save(path, quality=90, **kwargs)
    os.utime(path, (MTIME, MTIME))
    return path


def _probe(path: Path) -> dict:
    return media.probe_media(path, camera_id="cam-01", file_path=path.name)


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` pixels over a few bytes of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    data += chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


def _video(path: Path, n_frames: int = 25, fps: int = 10, metadata: dict[str, str] | None = None) -> Path:
    params = []
    for key, value in (metadata or {}).items():
        params += ["-metadata", f"{key}={value}"]
    # use_metadata_tags keeps keys such as make/model that plain MP4 would drop, as cameras do.
    params += ["-movflags", "use_metadata_tags"]
    writer = imageio_ffmpeg.write_frames(str(path), (64, 48), fps=fps, output_params=params)
    writer.send(None)
    for i in range(n_frames):
        writer.send(np.full((48, 64, 3), i * 9 % 256, dtype=np.uint8))
    writer.close()
    return path


# ---- recognising media ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("IMG_0001.JPG", "image"),
        ("a.jpeg", "image"),
        ("scan.tiff", "image"),
        ("a.png", "image"),
        ("clip.MP4", "video"),
        ("clip.avi", "video"),
        ("clip.mov", "video"),
        ("notes.txt", None),
        ("Thumbs.db", None),
        ("README", None),
    ],
)
def test_media_type_for(name: str, expected: str | None) -> None:
    assert media.media_type_for(Path("cam") / name) == expected


def test_rows_match_the_media_schema(tmp_path: Path) -> None:
    good = _probe(_jpeg(tmp_path / "good.jpg", _exif(original="2024:05:01 06:30:00")))
    bad = _probe(_png_header(tmp_path / "bomb.png", 100_000, 100_000))
    assert list(good) == schemas.MEDIA.names
    assert list(bad) == schemas.MEDIA.names
    table = pa.Table.from_pylist([good, bad], schema=schemas.MEDIA)
    assert table.column("status").to_pylist() == ["ok", "failed"]


# ---- EXIF round trips ----------------------------------------------------------------------------


def test_exif_time_gps_make_model_round_trip(tmp_path: Path) -> None:
    exif = _exif(
        original="2024:05:01 06:30:12",
        subsec="25",
        gps=_gps(-33.918861, -18.4233),
        make="Reconyx",
        model="HF2X",
    )
    path = _jpeg(tmp_path / "IMG_0001.JPG", exif)
    row = _probe(path)
    assert row["status"] == "ok", row["failure"]
    assert row["failure"] is None
    assert row["media_type"] == "image"
    assert row["timestamp"] == datetime(2024, 5, 1, 6, 30, 12, 250_000)
    assert row["timestamp_source"] == "exif"
    assert row["latitude"] == pytest.approx(-33.918861, abs=1e-6)
    assert row["longitude"] == pytest.approx(-18.4233, abs=1e-6)
    assert row["gps_status"] == "ok"
    assert (row["make"], row["model"]) == ("Reconyx", "HF2X")
    assert (row["width"], row["height"], row["frame_count"]) == (320, 240, 1)
    assert row["bytes"] == path.stat().st_size
    assert row["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (row["camera_id"], row["file_path"]) == ("cam-01", "IMG_0001.JPG")


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"digitized": "2023:12:24 23:59:58"}, datetime(2023, 12, 24, 23, 59, 58)),
        ({"datetime_ifd0": "2022:01:02 03:04:05"}, datetime(2022, 1, 2, 3, 4, 5)),
        # An unset camera clock is skipped in favour of the next tag.
        ({"original": "0000:00:00 00:00:00", "digitized": "2021:06:07 08:09:10"}, datetime(2021, 6, 7, 8, 9, 10)),
    ],
)
def test_exif_time_fallbacks(tmp_path: Path, tags: dict[str, str], expected: datetime) -> None:
    row = _probe(_jpeg(tmp_path / "a.jpg", _exif(**tags)))
    assert (row["timestamp"], row["timestamp_source"]) == (expected, "exif")


def test_missing_exif_falls_back_to_mtime_in_utc(tmp_path: Path) -> None:
    row = _probe(_jpeg(tmp_path / "no_exif.jpg"))
    assert row["status"] == "ok"
    assert row["timestamp_source"] == "file_mtime"
    assert row["timestamp"] == datetime.fromtimestamp(MTIME, timezone.utc).replace(tzinfo=None)
    assert row["gps_status"] == "missing"
    assert row["latitude"] is None and row["longitude"] is None
    assert row["make"] is None


def test_unset_clock_only_falls_back_to_mtime(tmp_path: Path) -> None:
    row = _probe(_jpeg(tmp_path / "a.jpg", _exif(original="0000:00:00 00:00:00", make="Bushnell")))
    assert row["timestamp_source"] == "file_mtime"
    assert row["make"] == "Bushnell"


def test_zero_zero_fix_counts_as_missing(tmp_path: Path) -> None:
    row = _probe(_jpeg(tmp_path / "a.jpg", _exif(original="2024:05:01 06:30:00", gps=_gps(0.0, 0.0))))
    assert row["status"] == "ok"
    assert (row["latitude"], row["longitude"], row["gps_status"]) == (None, None, "missing")


@pytest.mark.parametrize(
    ("gps", "reason"),
    [
        (_gps(95.0, 10.0), "latitude"),
        (_gps(45.0, 190.0), "longitude"),
        (
            {
                ExifTags.GPS.GPSLatitudeRef: "N",
                ExifTags.GPS.GPSLatitude: (IFDRational(0, 0), IFDRational(0, 1), IFDRational(0, 1)),
                ExifTags.GPS.GPSLongitudeRef: "E",
                ExifTags.GPS.GPSLongitude: _dms(10.0),
            },
            "not a number",
        ),
        ({**_gps(45.0, 10.0), ExifTags.GPS.GPSLatitudeRef: "X"}, "hemisphere"),
    ],
)
def test_invalid_gps_is_nulled_with_a_reason(tmp_path: Path, gps: dict, reason: str) -> None:
    row = _probe(_jpeg(tmp_path / "a.jpg", _exif(original="2024:05:01 06:30:00", gps=gps)))
    assert row["status"] == "ok"  # bad GPS does not make the photo unusable
    assert row["latitude"] is None and row["longitude"] is None
    assert row["gps_status"].startswith("invalid: ")
    assert reason in row["gps_status"]


def test_png_without_exif_is_ok(tmp_path: Path) -> None:
    path = tmp_path / "frame.png"
    _pixels(100, 50).save(path)
    row = _probe(path)
    assert (row["status"], row["width"], row["height"], row["timestamp_source"]) == ("ok", 100, 50, "file_mtime")


# ---- orientation and decoding --------------------------------------------------------------------


def test_orientation_swaps_dimensions_and_load_image_turns_upright(tmp_path: Path) -> None:
    # Orientation 6: stored landscape, displayed portrait (camera turned clockwise).
    path = _jpeg(tmp_path / "rotated.jpg", _exif(original="2024:05:01 06:30:00", orientation=6))
    row = _probe(path)
    assert (row["width"], row["height"]) == (240, 320)
    array = media.load_image(path)
    assert array.shape == (320, 240, 3)
    assert array.dtype == np.uint8


def test_load_image_max_side_decodes_reduced(tmp_path: Path) -> None:
    path = _jpeg(tmp_path / "big.jpg", size=(1600, 1200))
    full = media.load_image(path)
    small = media.load_image(path, max_side=300)
    assert full.shape == (1200, 1600, 3)
    assert max(small.shape[:2]) == 300
    assert small.shape[0] == 225
    # Same picture: the mean colour survives the reduced decode.
    assert np.abs(full.mean(axis=(0, 1)) - small.mean(axis=(0, 1))).max() < 3


def test_load_image_grey_png_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.new("L", (40, 30), 128).save(path)
    array = media.load_image(path)
    assert array.shape == (30, 40, 3)
    assert (array == 128).all()


# ---- bad files -----------------------------------------------------------------------------------


def test_truncated_jpeg_fails(tmp_path: Path) -> None:
    whole = _jpeg(tmp_path / "whole.jpg", _exif(original="2024:05:01 06:30:00"), size=(640, 480))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    row = _probe(cut)
    assert row["status"] == "failed"
    assert "truncated" in row["failure"]
    assert row["sha256"] == hashlib.sha256(cut.read_bytes()).hexdigest()  # still identifiable
    assert row["width"] is None and row["frame_count"] is None


def test_empty_file_fails(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    row = _probe(path)
    assert (row["status"], row["failure"], row["bytes"]) == ("failed", "empty file (0 bytes)", 0)


def test_text_named_jpg_fails(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("battery 80%, card 2 of 3\n")
    row = _probe(path)
    assert row["status"] == "failed"
    assert "not a readable image" in row["failure"]


def test_text_named_jpg_fails_cleanly_after_ultralytics_patched_pillow(tmp_path: Path) -> None:
    # ultralytics replaces PIL.Image.open with a wrapper that pip-installs a HEIF plugin when
    # Pillow cannot identify a file; a worker running the detector must still probe junk cleanly.
    import ultralytics.utils.patches as patches

    assert Image.open is not patches._image_open  # the wrapper is in place in this process
    path = tmp_path / "notes.jpg"
    path.write_text("not a photo")
    row = _probe(path)
    assert "not a readable image" in row["failure"]
    assert not patches._pil_plugins_registered  # nothing was installed or registered


@pytest.mark.parametrize("size", [(100_000, 100_000), (12_000, 12_600)])
def test_decompression_bomb_fails_without_decoding(tmp_path: Path, size: tuple[int, int]) -> None:
    # The first trips Pillow's own guard, the second (151 MP) only ours.
    row = _probe(_png_header(tmp_path / "bomb.png", *size))
    assert row["status"] == "failed"
    assert row["failure"].startswith("decompression bomb refused")


def test_pixel_limit_also_guards_load_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _jpeg(tmp_path / "a.jpg")
    monkeypatch.setattr(media, "MAX_IMAGE_PIXELS", 1000)
    assert "pixel limit" in _probe(path)["failure"]
    with pytest.raises(media.MediaError, match="pixel limit"):
        media.load_image(path)


def test_not_a_media_extension_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_text("x")
    row = _probe(path)
    assert row["status"] == "failed" and "'.txt'" in row["failure"]


def test_missing_file_fails(tmp_path: Path) -> None:
    row = _probe(tmp_path / "gone.jpg")
    assert row["status"] == "failed"
    assert "FileNotFoundError" in row["failure"]


# ---- video ---------------------------------------------------------------------------------------


def test_video_metadata_round_trip(tmp_path: Path) -> None:
    path = _video(
        tmp_path / "clip.mp4",
        metadata={
            "creation_time": "2024-05-01T06:30:00.000000Z",
            "location": "+59.9139+010.7522/",
            "make": "Browning",
            "model": "Recon Force",
        },
    )
    row = _probe(path)
    assert row["status"] == "ok", row["failure"]
    assert row["media_type"] == "video"
    assert (row["width"], row["height"], row["frame_count"]) == (64, 48, 25)
    assert (row["timestamp"], row["timestamp_source"]) == (datetime(2024, 5, 1, 6, 30), "video_metadata")
    assert (row["latitude"], row["longitude"], row["gps_status"]) == (59.9139, 10.7522, "ok")
    assert (row["make"], row["model"]) == ("Browning", "Recon Force")


def test_video_without_creation_time_uses_mtime(tmp_path: Path) -> None:
    path = _video(tmp_path / "clip.mp4", n_frames=5)
    os.utime(path, (MTIME, MTIME))
    row = _probe(path)
    assert row["status"] == "ok"
    assert row["timestamp_source"] == "file_mtime"
    assert row["gps_status"] == "missing"


def test_rotated_video_reports_the_upright_size(tmp_path: Path) -> None:
    # Phones and some cameras store frames sideways plus a rotation; ffmpeg decodes them upright.
    flat = _video(tmp_path / "flat.mp4", n_frames=3)
    turned = tmp_path / "turned.mp4"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-display_rotation", "90", "-i", str(flat), "-c", "copy", str(turned)]
    subprocess.run(cmd, check=True, capture_output=True)
    row = _probe(turned)
    assert (row["width"], row["height"]) == (48, 64)
    _, _, frame = next(media.read_video_frames(turned))
    assert frame.shape == (64, 48, 3)


def test_video_with_no_frames_fails(tmp_path: Path) -> None:
    path = _video(tmp_path / "nothing.mp4", n_frames=0)
    row = _probe(path)
    assert row["status"] == "failed"
    assert row["failure"] == "video has no frames: the container has no video stream"


def test_video_cut_before_its_frames_fails(tmp_path: Path) -> None:
    whole = _video(tmp_path / "whole.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:300])
    row = _probe(cut)
    assert row["status"] == "failed"
    assert row["failure"].startswith("video has no decodable frames")


def test_read_video_frames_samples_on_schedule(tmp_path: Path) -> None:
    path = _video(tmp_path / "clip.mp4", n_frames=35, fps=10)
    frames = list(media.read_video_frames(path, every_seconds=1.0, max_frames=10))
    assert [(n, s) for n, s, _ in frames] == [(0, 0.0), (10, 1.0), (20, 2.0), (30, 3.0)]
    for number, _, array in frames:
        assert array.shape == (48, 64, 3) and array.dtype == np.uint8
        # Each frame was written as one flat grey level: the right frame came back.
        assert abs(int(array.mean()) - number * 9 % 256) <= 3
    limited = list(media.read_video_frames(path, every_seconds=0.5, max_frames=2))
    assert [(n, s) for n, s, _ in limited] == [(0, 0.0), (5, 0.5)]


def test_read_video_frames_rejects_bad_interval(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="every_seconds"):
        next(media.read_video_frames(tmp_path / "x.mp4", every_seconds=0))


def test_nan_check_helper_matches_schema_rule() -> None:
    # The GPS rules shared by images and videos: NaN and 0,0 never reach the table.
    assert media._checked_position(math.nan, 1.0)["gps_status"].startswith("invalid")
    assert media._checked_position(0.0, 0.0) == {"gps_status": "missing"}
    assert media._checked_position(-90.0, 180.0)["gps_status"] == "ok"
