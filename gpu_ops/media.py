"""Media ingest: recognise camera-trap files, probe them into ``media`` rows, decode pixels.

``probe_media`` never raises for bad input. A camera card holds truncated JPEGs, zero-byte files,
stray text files and videos the camera never finished writing; each one becomes a ``media`` row
with ``status="failed"`` and a ``failure`` that says what was wrong (the MegaDetector habit: failed
media are recorded, never dropped). Files whose extension is not a media extension are not media at
all: ``media_type_for`` returns None and the caller skips them.

Decisions recorded here because the ``media`` schema depends on them:

- ``width``/``height`` of an image are as displayed, after the EXIF orientation is applied, so they
  match the arrays ``load_image`` returns and the normalised boxes detected on them.
- A decoded image larger than ``MAX_IMAGE_PIXELS`` is refused as a decompression bomb. Pillow's own
  guard is a process-wide setting that other code may change; ours does not depend on it.
- The EXIF time is the camera's local clock as written, kept naive. Without one a local file's
  modification time is recorded, in UTC (a file system has no camera clock, and UTC keeps the value
  the same on every machine that reads the file), with ``timestamp_source = file_mtime``: Hugin treats
  it as no capture time unless the profile opts in (``hugin.deployments`` says why). A file read
  from object storage has no such time (S3's LastModified is the upload): its timestamp stays null.
- A video's ``creation_time`` is kept as the container states it, also naive.
- A video's ``frame_rate`` is the stream's nominal rate as ffmpeg reports it; a video without one
  fails at ingest (its frames could not be placed in time, and Stage 1 could not sample them).

Failures are final only when they are a property of the file. Reading the bytes (a local read, an
S3 GET) can fail for reasons that clear up: :func:`read_retrying` retries those with backoff and,
when they persist, raises :class:`MediaReadError`, which is never the file's final failure: Stage 1
does not commit such a file, a probe records it without ``bytes`` so that the probe cache never
reuses it, and the next run tries the file again.
"""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import imageio_ffmpeg
from botocore.exceptions import BotoCoreError, ClientError
import numpy as np
from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from gpu_ops import schemas
from gpu_ops.fileio import sha256_file

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".avi", ".mov", ".mkv", ".wmv", ".mts", ".m2ts", ".3gp"})

# 150 megapixels: above any camera-trap or DSLR sensor (the largest are about 100 MP), far below
# what would exhaust a worker's memory (450 MB as RGB). Pillow's own guard (process-wide, 179 MP
# by default) is a second line; either way the file fails as a decompression bomb.
MAX_IMAGE_PIXELS = 150_000_000

# Decoding a whole video to count frames is bounded: a camera-trap clip takes seconds.
VIDEO_PROBE_TIMEOUT_S = 600.0

# A read that fails is tried this many times in all, waiting READ_BACKOFF_S, then twice that, ...
# between tries: enough to ride out a network blip or a card being remounted, short enough that a
# file that stays unreadable costs seconds, not minutes.
READ_ATTEMPTS = 3
READ_BACKOFF_S = 0.5


_EXIF_TIME_TAGS = (
    # (IFD holding the tag, time tag, sub-second tag)
    (ExifTags.IFD.Exif, ExifTags.Base.DateTimeOriginal, ExifTags.Base.SubsecTimeOriginal),
    (ExifTags.IFD.Exif, ExifTags.Base.DateTimeDigitized, ExifTags.Base.SubsecTimeDigitized),
    (None, ExifTags.Base.DateTime, ExifTags.Base.SubsecTime),
)

# EXIF orientations 5-8 rotate by 90 degrees: the displayed image has width and height swapped.
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})


def open_image(source: Path | io.BytesIO) -> Image.Image:
    """``PIL.Image.open`` as Pillow ships it, strict about truncated files.

    ultralytics replaces ``PIL.Image.open`` at import with a wrapper that, for a file Pillow cannot
    identify, pip-installs a HEIF plugin at run time and retries (raising ModuleNotFoundError when
    offline). Probing a card's junk files must neither install packages nor depend on whether
    ultralytics was imported in this process, so we call the function it wrapped.

    speciesnet and megadetector set ``ImageFile.LOAD_TRUNCATED_IMAGES = True`` when imported, which
    makes a truncated JPEG decode as "ok" with a grey bottom: here a truncated file is a broken file
    whatever was imported before, so the flag is put back before every open (it is read when the
    pixels load, which the callers do right after).
    """
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    patches = sys.modules.get("ultralytics.utils.patches")
    opener = getattr(patches, "_image_open", None) or Image.open
    return opener(source)


def media_type_for(path: Path | str) -> str | None:
    """``"image"`` or ``"video"`` by file extension; None for files that are not media."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return None


def probe_media(path: Path, *, camera_id: str, file_path: str, file_mtime: bool = True) -> dict[str, Any]:
    """One ``schemas.MEDIA`` row for the file at ``path``; bad input gives ``status="failed"``.

    A file that cannot be read (see the module docstring) is a failed row too, but one with no
    ``bytes``: it says what happened this run and is never reused as the file's result.

    ``file_path`` is the path relative to the camera folder that the row records (POSIX
    separators); ``path`` is where the bytes are read from now. ``file_mtime=False`` says the file's
    modification time is not the card's (a temporary copy of an S3 object), so it is never recorded.
    """
    path = Path(path)
    row = _blank_row(camera_id, file_path, media_type_for(path))
    try:
        if row["media_type"] is None:
            raise MediaError(f"'{path.suffix}' is not an image or video extension")
        stat = read_retrying(path.stat, file_path)
        row["bytes"] = stat.st_size
        row["sha256"] = read_retrying(lambda: sha256_file(path), file_path)
        if stat.st_size == 0:
            raise MediaError("empty file (0 bytes)")
        if row["media_type"] == "image":
            row.update(_probe_image(path))
        else:
            row.update(_probe_video(path))
        if row["timestamp"] is None and file_mtime:
            row["timestamp"] = datetime.fromtimestamp(stat.st_mtime, timezone.utc).replace(tzinfo=None)
            row["timestamp_source"] = "file_mtime"
        row["status"] = "ok"
    except MediaReadError as exc:
        return unread_row(camera_id, file_path, row["media_type"], exc)
    except MediaError as exc:
        _mark_failed(row, str(exc))
    except MemoryError:
        _mark_failed(row, "ran out of memory decoding the file")
    except Exception as exc:  # noqa: BLE001 - any decoder error is a property of the file
        _mark_failed(row, f"{type(exc).__name__}: {exc}")
    return row


def _blank_row(camera_id: str, file_path: str, media_type: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {name: None for name in schemas.MEDIA.names}
    row.update(camera_id=camera_id, file_path=file_path, media_type=media_type, timestamp_source="none", gps_status="missing")
    return row


def unread_row(camera_id: str, file_path: str, media_type: str | None, err: MediaReadError) -> dict[str, Any]:
    """The media row of a file whose bytes could not be read this run: failed, without ``bytes``
    (the size the probe cache compares), so the next run probes it again."""
    row = _blank_row(camera_id, file_path, media_type)
    _mark_failed(row, str(err))
    return row


def load_image(path: Path, *, max_side: int | None = None) -> np.ndarray:
    """The image as an RGB ``uint8`` array ``(height, width, 3)``, upright per its EXIF orientation.

    With ``max_side``, the long side is at most that many pixels. JPEGs are decoded at a reduced
    scale by libjpeg (Pillow's draft mode), which is several times cheaper than a full decode.
    """
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be a positive number of pixels, got {max_side}")
    with warnings.catch_warnings(), open_image(path) as img:
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit applies
        _check_pixels(img)
        width, height = img.size
        if max_side is not None and max(width, height) > max_side:
            # draft() picks the largest reduction that keeps at least this size, so the resize
            # below only ever shrinks, from a much smaller decode.
            scale = max_side / max(width, height)
            img.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        rgb = upright(img, exif_orientation(img)).convert("RGB")
    if max_side is not None and max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def read_video_frames(
    path: Path, *, every_seconds: float = 1.0, max_frames: int = 10
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Sample frames from a video: ``(frame_number, seconds from start, RGB uint8 array)``.

    Frames are taken every ``every_seconds`` starting with frame 0, at most ``max_frames`` of them.
    ffmpeg selects the frames itself, so only the sampled frames cross the pipe. Frame numbers are
    indices into the decoded stream; the offset assumes the stream's nominal frame rate.
    """
    if every_seconds <= 0:
        raise ValueError(f"every_seconds must be positive, got {every_seconds}")
    if max_frames < 1:
        return
    fps = _video_fps(path)
    step = max(1, round(every_seconds * fps))
    frames = imageio_ffmpeg.read_frames(
        str(path),
        pix_fmt="rgb24",
        output_params=[
            "-map", "0:v:0",
            "-vf", f"select=not(mod(n\\,{step}))",
            "-fps_mode", "vfr",
            "-frames:v", str(max_frames),
        ],
    )
    try:
        meta = next(frames)
        width, height = meta["size"]
        for index, raw in enumerate(frames):
            frame_number = index * step
            array = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
            yield frame_number, frame_number / fps, array
    finally:
        frames.close()


class MediaError(ValueError):
    """A file that is not usable media; in ``probe_media`` the message becomes the ``failure``."""


_TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation (1-8) of an opened image; 1 (upright) when absent or unreadable."""
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block only costs us the metadata
        return 1
    return value if value in _TRANSPOSE_FOR_ORIENTATION else 1


def displayed_size(img: Image.Image, orientation: int) -> tuple[int, int]:
    """``(width, height)`` as displayed: swapped for the orientations that turn by 90 degrees."""
    width, height = img.size
    return (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)


def upright(img: Image.Image, orientation: int) -> Image.Image:
    """The pixels in the displayed orientation (the image itself when it is stored upright).

    Every decode that feeds the detector, a crop or the motion model goes through this, so boxes
    are always in the displayed frame that ``media.width``/``height`` describe.
    """
    method = _TRANSPOSE_FOR_ORIENTATION.get(orientation)
    return img if method is None else img.transpose(method)


class MediaReadError(Exception):
    """The file's bytes could not be read (I/O, S3, a timeout), even after retries.

    Not a property of the file: it is never recorded as the media's failure, so the next run tries again.
    """


T = TypeVar("T")


def is_read_error(err: BaseException) -> bool:
    """Whether ``err`` is an error of reading (that may clear up), not of the file's contents.

    OSError covers local I/O, permissions, a vanished file and socket timeouts; botocore's errors
    cover S3 (a missing key, throttling, connection and read timeouts). Call it only around reads:
    Pillow reports corrupt data as OSError too.
    """
    return isinstance(err, (OSError, BotoCoreError, ClientError))


def read_retrying(read: Callable[[], T], what: str, *, attempts: int | None = None, backoff_s: float | None = None) -> T:
    """``read()``, tried again with exponential backoff on read errors; then :class:`MediaReadError`."""
    attempts = attempts or READ_ATTEMPTS
    backoff_s = READ_BACKOFF_S if backoff_s is None else backoff_s
    for attempt in range(attempts):
        try:
            return read()
        except Exception as err:  # noqa: BLE001 - only read errors are retried, the rest re-raised
            if not is_read_error(err):
                raise
            if attempt == attempts - 1:
                raise MediaReadError(f"{what} could not be read ({attempts} tries): {type(err).__name__}: {err}") from err
            time.sleep(backoff_s * 2**attempt)


def _mark_failed(row: dict[str, Any], reason: str) -> None:
    row.update(
        status="failed",
        failure=reason,
        width=None,
        height=None,
        frame_count=None,
        frame_rate=None,
        latitude=None,
        longitude=None,
    )


def _check_pixels(img: Image.Image) -> None:
    width, height = img.size
    if width * height > MAX_IMAGE_PIXELS:
        raise MediaError(
            f"decompression bomb refused: image claims {width}x{height} pixels, more than the"
            f" {MAX_IMAGE_PIXELS:,} pixel limit (gpu_ops.media.MAX_IMAGE_PIXELS)"
        )


def _probe_image(path: Path) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():
            # Our own limit applies; Pillow's process-wide one must not decide instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with open_image(path) as img:
                _check_pixels(img)
                exif = _read_exif(img)
                width, height = img.size
                # A reduced-scale decode still runs the whole entropy-coded stream through libjpeg,
                # so truncation and corruption surface here at a fraction of the full cost.
                img.draft(img.mode, (max(1, width // 8), max(1, height // 8)))
                img.load()
    except UnidentifiedImageError:
        raise MediaError("not a readable image: the contents are not in any known image format")
    except Image.DecompressionBombError as exc:
        raise MediaError(f"decompression bomb refused: {exc}")
    except OSError as exc:
        raise MediaError(f"image data is corrupt or truncated: {exc}")
    except SyntaxError as exc:  # Pillow's plugins report malformed headers this way
        raise MediaError(f"image header is malformed: {exc}")

    if exif is not None and exif.get(ExifTags.Base.Orientation) in _SWAPPING_ORIENTATIONS:
        width, height = height, width
    info: dict[str, Any] = {"width": width, "height": height, "frame_count": 1}
    if exif is None:
        return info
    timestamp = _exif_timestamp(exif)
    if timestamp is not None:
        info.update(timestamp=timestamp, timestamp_source="exif")
    info.update(_exif_gps(exif))
    info["make"] = _exif_text(exif.get(ExifTags.Base.Make))
    info["model"] = _exif_text(exif.get(ExifTags.Base.Model))
    return info


def _read_exif(img: Image.Image) -> Image.Exif | None:
    """The EXIF block, or None when absent or unreadable (the pixels may still be fine)."""
    try:
        exif = img.getexif()
    except Exception:  # noqa: BLE001 - a broken EXIF block only costs us the metadata
        return None
    return exif if len(exif) else None


def _exif_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).replace("\x00", "").strip()
    return text or None


def _exif_timestamp(exif: Image.Exif) -> datetime | None:
    for ifd, tag, subsec_tag in _EXIF_TIME_TAGS:
        try:
            tags = exif.get_ifd(ifd) if ifd is not None else exif
        except Exception:  # noqa: BLE001 - an unreadable sub-IFD is the same as a missing one
            continue
        parsed = _parse_exif_time(_exif_text(tags.get(tag)), _exif_text(tags.get(subsec_tag)))
        if parsed is not None:
            return parsed
    return None


def _parse_exif_time(text: str | None, subsec: str | None) -> datetime | None:
    # EXIF says "YYYY:MM:DD HH:MM:SS"; some writers use '-' in the date or 'T' as the separator.
    if not text:
        return None
    match = re.match(r"(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})", text)
    if not match:
        return None
    try:
        value = datetime(*(int(part) for part in match.groups()))
    except ValueError:  # "0000:00:00 00:00:00" is what cameras write for "clock not set"
        return None
    if subsec and subsec.isdigit():
        value = value.replace(microsecond=int(subsec[:6].ljust(6, "0")))
    return value


def _exif_gps(exif: Image.Exif) -> dict[str, Any]:
    try:
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    except Exception as exc:  # noqa: BLE001
        return {"gps_status": f"invalid: unreadable GPS block ({type(exc).__name__})"}
    if not gps:
        return {"gps_status": "missing"}
    lat_value, lon_value = gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLongitude)
    if lat_value is None or lon_value is None:
        return {"gps_status": "missing"}
    try:
        latitude = _degrees(lat_value) * _ref_sign(gps.get(ExifTags.GPS.GPSLatitudeRef), "N", "S")
        longitude = _degrees(lon_value) * _ref_sign(gps.get(ExifTags.GPS.GPSLongitudeRef), "E", "W")
    except MediaError as exc:
        return {"gps_status": f"invalid: {exc}"}
    return _checked_position(latitude, longitude)


def _checked_position(latitude: float, longitude: float) -> dict[str, Any]:
    if math.isnan(latitude) or math.isnan(longitude):
        status = "invalid: coordinate is not a number"
    elif latitude == 0.0 and longitude == 0.0:
        # Receivers without a fix write 0,0; nobody sets camera traps in the Gulf of Guinea.
        return {"gps_status": "missing"}
    elif not -90.0 <= latitude <= 90.0:
        status = f"invalid: latitude {latitude} outside [-90, 90]"
    elif not -180.0 <= longitude <= 180.0:
        status = f"invalid: longitude {longitude} outside [-180, 180]"
    else:
        return {"latitude": latitude, "longitude": longitude, "gps_status": "ok"}
    return {"gps_status": status}


def _degrees(value: Any) -> float:
    """Degrees, minutes, seconds rationals (or a lone number) as decimal degrees."""
    parts = list(value) if isinstance(value, (tuple, list)) else [value]
    if not 1 <= len(parts) <= 3:
        raise MediaError(f"coordinate has {len(parts)} parts, expected degrees, minutes, seconds")
    try:
        numbers = [float(part) for part in parts]
    except (TypeError, ValueError, ZeroDivisionError):
        raise MediaError(f"coordinate {value!r} is not numeric")
    return sum(number / 60**i for i, number in enumerate(numbers))


def _ref_sign(ref: Any, positive: str, negative: str) -> float:
    text = (_exif_text(ref) or "").upper()
    if text == negative:
        return -1.0
    if text in (positive, ""):  # a missing ref is read as the positive hemisphere, as exiftool does
        return 1.0
    raise MediaError(f"hemisphere reference {text!r} is neither {positive!r} nor {negative!r}")


# ---- video ---------------------------------------------------------------------------------------

_STREAM_SIZE = re.compile(r"Stream #0:\d+.*?: Video: .*?, (\d{2,5})x(\d{2,5})")
_META_LINE = re.compile(r"^\s{4}(\w[\w.\-]*)\s*: (.*)$")
_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")
_ISO6709 = re.compile(r"^([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)")


def _run_ffmpeg(args: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, errors="replace", timeout=VIDEO_PROBE_TIMEOUT_S
    )


def _probe_video(path: Path) -> dict[str, Any]:
    """Decode the whole first video stream: counts the frames that really decode."""
    try:
        done = _run_ffmpeg(
            ["-i", str(path), "-map", "0:v:0", "-f", "null", "-progress", "pipe:1", "-nostats", "-"]
        )
    except subprocess.TimeoutExpired:
        raise MediaError(f"decoding the video took longer than {VIDEO_PROBE_TIMEOUT_S:.0f} s")
    if "matches no streams" in done.stderr:
        raise MediaError("video has no frames: the container has no video stream")
    frames = [int(v) for v in re.findall(r"^frame=(\d+)$", done.stdout, flags=re.MULTILINE)]
    frame_count = frames[-1] if frames else 0
    if frame_count == 0:
        detail = f": {_ffmpeg_reason(done.stderr)}" if done.returncode != 0 else ""
        raise MediaError(f"video has no decodable frames{detail}")
    # A non-zero exit after some frames decoded is a clip cut short (camera lost power): the
    # frames that decode are real and are counted; the rest of the file is lost either way.
    size = _STREAM_SIZE.search(done.stderr)
    if size is None:
        raise MediaError("ffmpeg did not report the video's frame size")
    width, height = int(size.group(1)), int(size.group(2))
    frame_rate = _frame_rate_in(done.stderr)
    if frame_rate is None:
        raise MediaError("ffmpeg did not report the video's frame rate: its frames cannot be placed in time")
    rotation = _ROTATION.search(done.stderr)
    if rotation and round(abs(float(rotation.group(1)))) % 180 == 90:
        # ffmpeg turns such frames upright when decoding; record the size the frames come out in.
        width, height = height, width
    info: dict[str, Any] = {"width": width, "height": height, "frame_count": frame_count, "frame_rate": frame_rate}
    metadata = _container_metadata(done.stderr)
    created = _parse_iso_time(metadata.get("creation_time"))
    if created is not None:
        info.update(timestamp=created, timestamp_source="video_metadata")
    location = metadata.get("location") or metadata.get("com.apple.quicktime.location.iso6709")
    if location:
        match = _ISO6709.match(location)
        if match:
            info.update(_checked_position(float(match.group(1)), float(match.group(2))))
        else:
            info["gps_status"] = f"invalid: location {location!r} is not ISO 6709"
    info["make"] = metadata.get("make") or metadata.get("com.apple.quicktime.make")
    info["model"] = metadata.get("model") or metadata.get("com.apple.quicktime.model")
    return info


def _container_metadata(stderr: str) -> dict[str, str]:
    """The input's container-level ``Metadata:`` block from ffmpeg's log, keys lower-cased."""
    metadata: dict[str, str] = {}
    in_block = False
    for line in stderr.splitlines():
        if line.startswith("  Metadata:"):
            in_block = True
            continue
        if in_block:
            match = _META_LINE.match(line)
            if not match:
                break  # the first stream's own metadata is indented further and comes later
            # A key stored both as a QuickTime atom and as an MP4 tag is listed once, ';'-joined;
            # the keys we read (time, place, make, model) never contain ';' themselves.
            metadata.setdefault(match.group(1).lower(), match.group(2).split(";", 1)[0].strip())
    return metadata


def _parse_iso_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.year < 1990:  # 1904-01-01, the QuickTime epoch, means "not set"
        return None
    return value.replace(tzinfo=None)


def _ffmpeg_reason(stderr: str) -> str:
    """The line of ffmpeg's log that says what is wrong with the input, not the generic epilogue."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    # The demuxer's own complaints ("[in#0/mov,...] moov atom not found", "... partial file") or
    # "<path>: Invalid data found when processing input" name the real problem.
    for line in lines:
        if line.startswith("[in#") or ": Invalid data found" in line:
            return re.sub(r"^\[in#[^\]]*\]\s*", "", line)
    return lines[-1] if lines else "no error output"


_FRAME_RATE = re.compile(r"Stream #0:\d+.*?: Video: .*?, ([\d.]+) (?:fps|tbr)")


def _frame_rate_in(stderr: str) -> float | None:
    """The first video stream's nominal frame rate from ffmpeg's log; None when absent or zero."""
    match = _FRAME_RATE.search(stderr)
    return float(match.group(1)) if match and float(match.group(1)) > 0 else None


def _video_fps(path: Path) -> float:
    done = _run_ffmpeg(["-i", str(path)])  # exits 1 (no output given) after printing the header
    fps = _frame_rate_in(done.stderr)
    if fps is None:
        raise ValueError(f"cannot read the frame rate of {path}: {_ffmpeg_reason(done.stderr)}")
    return fps
