"""Bursts: the 3 to 10 frames a camera trap shoots on one trigger, grouped per camera.

A burst is the unit the motion model works on (:mod:`gpu_ops.motion`): frames shot seconds apart from
one fixed position, whose per-pixel median is the empty scene. Grouping uses, per camera:

1. The camera's own sequence counter where the maker writes one (:func:`read_maker_sequence`). Then
   the counter decides: a frame whose index restarts (``1 of 3`` after ``3 of 3``) or whose event
   number changes opens a new burst, whatever the clock says. This matters because EXIF time has
   one-second resolution and two triggers can fall within ``max_gap_s`` of each other.
2. Otherwise the EXIF time: a frame more than ``max_gap_s`` seconds after the previous one opens a new
   burst. Frames with the same second are ordered by file name, which is how every trap numbers them.

Whatever the evidence, a burst never holds more than ``max_frames`` frames: a camera left in
time-lapse or rapid-fire mode would otherwise chain into one endless "burst", and the median of
hours of frames is not the empty scene of one moment.

Videos, failed media and media without any time are bursts of their own (size 1): the motion model
skips bursts shorter than its minimum, so these simply get the detector alone.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
from PIL import ExifTags, Image

# Columns the media table gains (proposed names; the lead adds them to schemas.MEDIA).
BURST_FIELDS = [
    ("burst_id", pa.string()),  # "<camera_id>/<sha256[:16] of the burst's first frame>"
    ("burst_index", pa.int32()),  # 0-based position of the frame in its burst
    ("burst_size", pa.int32()),  # frames in the burst
]
BURST_SCHEMA = pa.schema(BURST_FIELDS)

# Optional input columns, filled by read_maker_sequence where the camera writes a counter.
MAKER_SEQUENCE_FIELDS = [
    ("maker_sequence", pa.int32()),  # 1-based index in the camera's own burst counter
    ("maker_sequence_length", pa.int32()),  # frames the camera planned for that burst
    ("maker_event", pa.int64()),  # the camera's trigger/event number
]


@dataclass(frozen=True)
class MakerSequence:
    """What a camera says about a frame's place in its burst."""

    index: int  # 1-based
    length: int | None  # planned burst length, when written
    event: int | None  # trigger counter, when written
    source: str  # e.g. "reconyx-hyperfire", "text:ImageDescription"


# Reconyx writes a fixed little-endian block as its MakerNote (layouts as documented by ExifTool's
# Reconyx tables). The HyperFire block opens with the version word 0xF101; the sequence is two
# uint16 ("index of length") and the event number two uint16 (high word first).
_RECONYX_LAYOUTS = {
    "reconyx-hyperfire": (b"\x01\xf1", 14, 18),
    "reconyx-hyperfire2": (b"RECONYXH2\x00", 54, 58),
}

# Text counters some makers print into ImageDescription / UserComment, e.g. "Seq 2/3",
# "Burst: 2 of 3", "IMG 2 of 3". A bare "2/3" is not accepted: it is as often part of a date.
_TEXT_SEQUENCE = re.compile(
    r"(?:\b(?:seq(?:uence)?|burst|shot|photo|image|img|pic(?:ture)?)\s*(?:no\.?|#)?\s*[:=]?\s*"
    r"(\d{1,2})\s*(?:/|of)\s*(\d{1,2})\b)"
    r"|(?:\b(\d{1,2})\s+of\s+(\d{1,2})\b)",
    re.IGNORECASE,
)
_TEXT_TAGS = (
    (None, ExifTags.Base.ImageDescription, "ImageDescription"),
    (ExifTags.IFD.Exif, ExifTags.Base.UserComment, "UserComment"),
    (ExifTags.IFD.Exif, ExifTags.Base.MakerNote, "MakerNote"),
)
# A burst longer than this from a camera counter is not a burst but a misread.
_MAX_COUNTER = 99


def read_maker_sequence(path: Path | str) -> MakerSequence | None:
    """The camera's own burst counter for an image file, or None where the maker writes none.

    Reads Reconyx HyperFire / HyperFire 2 MakerNotes and "Seq 2/3"-style counters in the
    ImageDescription, UserComment or a text MakerNote. Never raises for a file without EXIF or with
    a MakerNote it does not know; a file Pillow cannot open at all gives None too (the media probe
    records that failure, this is only a hint for grouping).
    """
    try:
        with Image.open(path) as img:
            exif = img.getexif()
    except Exception:  # noqa: BLE001 - a hint only; decoders that other libraries hook into Pillow
        # (ultralytics adds a HEIF opener that raises ImportError) must not fail the grouping.
        return None
    return maker_sequence_from_exif(exif)


def maker_sequence_from_exif(exif: Image.Exif) -> MakerSequence | None:
    exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
    note = exif_ifd.get(ExifTags.Base.MakerNote)
    if isinstance(note, bytes):
        found = _reconyx_sequence(note)
        if found is not None:
            return found
    for ifd, tag, name in _TEXT_TAGS:
        value = (exif_ifd if ifd is not None else exif).get(tag)
        found = _text_sequence(value, name)
        if found is not None:
            return found
    return None


def _reconyx_sequence(note: bytes) -> MakerSequence | None:
    for source, (magic, seq_at, event_at) in _RECONYX_LAYOUTS.items():
        if note.startswith(magic) and len(note) >= event_at + 4:
            index, length = struct.unpack_from("<HH", note, seq_at)
            high, low = struct.unpack_from("<HH", note, event_at)
            if 1 <= index <= _MAX_COUNTER and (length == 0 or index <= length <= _MAX_COUNTER):
                return MakerSequence(index=index, length=length or None, event=(high << 16) | low, source=source)
    return None


def _text_sequence(value, tag_name: str) -> MakerSequence | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        # UserComment opens with an 8-byte character-code header; a text MakerNote has none.
        header, body = value[:8], value[8:]
        if header == b"UNICODE\x00":
            text = body.decode("utf-16", errors="ignore")
        elif header in (b"ASCII\x00\x00\x00", b"\x00" * 8):
            text = body.decode("latin-1", errors="ignore")
        else:
            text = value.decode("latin-1", errors="ignore")
    else:
        text = str(value)
    match = _TEXT_SEQUENCE.search(text)
    if match is None:
        return None
    groups = [g for g in match.groups() if g is not None]
    index, length = int(groups[0]), int(groups[1])
    if not 1 <= index <= length <= _MAX_COUNTER:
        return None
    return MakerSequence(index=index, length=length, event=None, source=f"text:{tag_name}")


def assign_bursts(media: pa.Table, *, max_gap_s: float = 3.0, max_frames: int = 30) -> pa.Table:
    """``burst_id``, ``burst_index``, ``burst_size`` for every row of ``media``, in its row order.

    ``media`` needs ``camera_id``, ``file_path``, ``sha256``, ``timestamp``; ``media_type``,
    ``status`` and the ``maker_sequence`` / ``maker_sequence_length`` / ``maker_event`` columns are
    used where present. The result has exactly ``len(media)`` rows (:data:`BURST_SCHEMA`), so the
    caller appends its columns to ``media`` as they are.

    ``burst_id`` is stable across runs and machines: the camera plus the content hash of the burst's
    first frame. A burst that gains a late frame keeps its id as long as its first frame stays first.
    """
    if max_gap_s < 0:
        raise ValueError(f"max_gap_s must be zero or more seconds, got {max_gap_s}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    missing = {"camera_id", "file_path", "sha256", "timestamp"} - set(media.column_names)
    if missing:
        raise ValueError(f"assign_bursts needs media columns {sorted(missing)}: pass the media table (schemas.MEDIA)")

    rows = media.select(
        [c for c in ("camera_id", "file_path", "sha256", "timestamp", "media_type", "status",
                     "maker_sequence", "maker_sequence_length", "maker_event") if c in media.column_names]
    ).to_pylist()
    burst_of: list[tuple[str, int, int] | None] = [None] * len(rows)
    used: set[str] = set()

    by_camera: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        if _groupable(row):
            by_camera.setdefault(row["camera_id"], []).append(i)
        else:
            _close([i], rows, burst_of, used)

    for indices in by_camera.values():
        # Within one second the file name orders frames (traps number them in shooting order); the
        # counter must not, or the last frame of one trigger and the first of the next swap places.
        indices.sort(key=lambda i: (rows[i]["timestamp"], rows[i]["file_path"]))
        current: list[int] = []
        for i in indices:
            if current and _opens_new_burst(rows[current[-1]], rows[i], len(current), max_gap_s, max_frames):
                _close(current, rows, burst_of, used)
                current = []
            current.append(i)
        if current:
            _close(current, rows, burst_of, used)

    return pa.table(
        {
            "burst_id": pa.array([b[0] for b in burst_of], pa.string()),
            "burst_index": pa.array([b[1] for b in burst_of], pa.int32()),
            "burst_size": pa.array([b[2] for b in burst_of], pa.int32()),
        },
        schema=BURST_SCHEMA,
    )


def _groupable(row: dict) -> bool:
    return (
        row.get("status", "ok") == "ok"
        and row.get("media_type", "image") == "image"
        and isinstance(row["timestamp"], datetime)
        and row["sha256"] is not None
    )


def _burst_id(first: dict) -> str:
    # Failed media may have no hash (an unreadable file); the path still identifies the row.
    key = first["sha256"][:16] if first.get("sha256") else "path:" + first["file_path"]
    return f"{first['camera_id']}/{key}"


def _opens_new_burst(prev: dict, cur: dict, current_size: int, max_gap_s: float, max_frames: int) -> bool:
    if current_size >= max_frames:
        return True
    gap = (cur["timestamp"] - prev["timestamp"]).total_seconds()
    prev_seq, cur_seq = prev.get("maker_sequence"), cur.get("maker_sequence")
    if prev_seq is not None and cur_seq is not None:
        prev_event, cur_event = prev.get("maker_event"), cur.get("maker_event")
        if prev_event is not None and cur_event is not None:
            if prev_event != cur_event:
                return True
        elif cur_seq <= prev_seq:
            return True  # the counter restarted: a new trigger
        planned = prev.get("maker_sequence_length")
        if planned is not None and prev_seq >= planned:
            return True  # the previous burst was complete
        # The counter says "same burst": trust it over the clock, within reason (a camera's
        # recovery between frames is seconds, not minutes).
        return gap > max(max_gap_s, 60.0)
    return gap > max_gap_s


def _close(members: list[int], rows: list[dict], burst_of: list, used: set[str]) -> None:
    burst_id = _burst_id(rows[members[0]])
    if burst_id in used:
        # The same first frame twice (a file copied within the camera folder): keep ids unique.
        burst_id = f"{burst_id}~{rows[members[0]]['file_path']}"
    used.add(burst_id)
    for position, i in enumerate(members):
        burst_of[i] = (burst_id, position, len(members))
