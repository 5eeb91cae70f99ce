"""Grouping a camera's media into bursts: by EXIF time, by the camera's own counter, never too long."""

from __future__ import annotations

import struct
from datetime import datetime, timedelta

import pyarrow as pa
import pytest
from PIL import Image

from gpu_ops.bursts import BURST_SCHEMA, assign_bursts, read_maker_sequence

T0 = datetime(2024, 5, 1, 2, 0, 0)


def _media(rows: list[dict]) -> pa.Table:
    base = {"camera_id": "cam-a", "media_type": "image", "status": "ok"}
    full = []
    for i, row in enumerate(rows):
        item = {**base, "file_path": f"IMG_{i:04d}.JPG", "sha256": f"{i:016x}" + "f" * 48, **row}
        full.append(item)
    return pa.Table.from_pylist(full)


def _groups(media: pa.Table, result: pa.Table) -> list[list[str]]:
    by_id: dict[str, list[tuple[int, str]]] = {}
    for path, burst, index in zip(media["file_path"].to_pylist(), result["burst_id"].to_pylist(),
                                  result["burst_index"].to_pylist()):
        by_id.setdefault(burst, []).append((index, path))
    return sorted([[p for _, p in sorted(members)] for members in by_id.values()])


def test_gaps_in_exif_time_split_bursts_and_rows_keep_their_order():
    seconds = [0, 1, 2, 30, 31, 32, 33, 300]
    media = _media([{"timestamp": T0 + timedelta(seconds=s)} for s in seconds])
    shuffled = media.take([7, 3, 0, 5, 1, 6, 2, 4])
    result = assign_bursts(shuffled, max_gap_s=3.0)
    assert result.schema == BURST_SCHEMA
    assert len(result) == len(shuffled)
    assert _groups(shuffled, result) == [
        ["IMG_0000.JPG", "IMG_0001.JPG", "IMG_0002.JPG"],
        ["IMG_0003.JPG", "IMG_0004.JPG", "IMG_0005.JPG", "IMG_0006.JPG"],
        ["IMG_0007.JPG"],
    ]
    sizes = dict(zip(shuffled["file_path"].to_pylist(), result["burst_size"].to_pylist()))
    assert sizes["IMG_0005.JPG"] == 4 and sizes["IMG_0007.JPG"] == 1


def test_same_second_frames_are_ordered_by_file_name_and_ids_are_stable():
    media = _media([{"timestamp": T0} for _ in range(3)])
    first = assign_bursts(media)
    again = assign_bursts(media.take([2, 1, 0]))
    assert first["burst_index"].to_pylist() == [0, 1, 2]
    assert set(first["burst_id"].to_pylist()) == set(again["burst_id"].to_pylist()) == {f"cam-a/{0:016x}"}


def test_cameras_never_share_a_burst():
    media = _media([{"timestamp": T0, "camera_id": "cam-a"}, {"timestamp": T0, "camera_id": "cam-b"}])
    assert len(set(assign_bursts(media)["burst_id"].to_pylist())) == 2


def test_camera_counter_splits_two_triggers_within_the_time_gap():
    # Two triggers 1 s apart: the clock alone would merge them, the counter restarts at 1.
    rows = [{"timestamp": T0 + timedelta(seconds=s), "maker_sequence": q, "maker_sequence_length": 3}
            for s, q in [(0, 1), (0, 2), (1, 3), (2, 1), (2, 2), (3, 3)]]
    media = _media(rows)
    assert sorted(len(g) for g in _groups(media, assign_bursts(media))) == [3, 3]


def test_camera_event_number_outranks_a_long_recovery_gap():
    # A slow night burst: 5 s between frames, but the camera says it is one event.
    rows = [{"timestamp": T0 + timedelta(seconds=5 * k), "maker_sequence": k + 1, "maker_event": 77}
            for k in range(3)]
    rows.append({"timestamp": T0 + timedelta(seconds=16), "maker_sequence": 1, "maker_event": 78})
    media = _media(rows)
    assert sorted(len(g) for g in _groups(media, assign_bursts(media, max_gap_s=3.0))) == [1, 3]


def test_time_lapse_runs_are_cut_at_max_frames():
    media = _media([{"timestamp": T0 + timedelta(seconds=k)} for k in range(7)])
    assert sorted(len(g) for g in _groups(media, assign_bursts(media, max_frames=3))) == [1, 3, 3]


def test_failed_media_videos_and_missing_times_are_bursts_of_their_own():
    media = _media([
        {"timestamp": T0},
        {"timestamp": T0 + timedelta(seconds=1), "status": "failed", "sha256": None},
        {"timestamp": T0 + timedelta(seconds=1), "media_type": "video"},
        {"timestamp": None},
        {"timestamp": T0 + timedelta(seconds=2)},
    ])
    result = assign_bursts(media)
    assert result["burst_size"].to_pylist() == [2, 1, 1, 1, 2]
    assert result["burst_id"][1].as_py() == "cam-a/path:IMG_0001.JPG"


def test_bad_arguments_say_what_to_pass():
    with pytest.raises(ValueError, match="needs media columns"):
        assign_bursts(pa.table({"camera_id": ["a"]}))
    with pytest.raises(ValueError, match="max_gap_s"):
        assign_bursts(_media([{"timestamp": T0}]), max_gap_s=-1)


def _jpeg_with_exif(path, exif: Image.Exif) -> str:
    Image.new("RGB", (32, 24)).save(path, exif=exif.tobytes())
    return str(path)


def test_reads_reconyx_hyperfire_counter(tmp_path):
    note = bytearray(64)
    note[0:2] = b"\x01\xf1"
    struct.pack_into("<HH", note, 14, 2, 3)  # frame 2 of 3
    struct.pack_into("<HH", note, 18, 0, 417)  # event 417
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x927C] = bytes(note)
    found = read_maker_sequence(_jpeg_with_exif(tmp_path / "r.jpg", exif))
    assert (found.index, found.length, found.event, found.source) == (2, 3, 417, "reconyx-hyperfire")


def test_reads_text_counters_but_not_dates(tmp_path):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\x00\x00\x00Seq: 3/5 Temp 12C"
    found = read_maker_sequence(_jpeg_with_exif(tmp_path / "u.jpg", exif))
    assert (found.index, found.length, found.source) == (3, 5, "text:UserComment")

    dated = Image.Exif()
    dated[0x010E] = "2024/05/01 12/05 trail"
    assert read_maker_sequence(_jpeg_with_exif(tmp_path / "d.jpg", dated)) is None
    assert read_maker_sequence(_jpeg_with_exif(tmp_path / "none.jpg", Image.Exif())) is None
    (tmp_path / "text.jpg").write_text("not an image")
    assert read_maker_sequence(tmp_path / "text.jpg") is None


def test_a_copied_first_frame_does_not_merge_two_burst_ids():
    media = _media([{"timestamp": T0}, {"timestamp": T0 + timedelta(seconds=60)}])
    media = media.set_column(media.schema.get_field_index("sha256"), "sha256", pa.array(["a" * 64, "a" * 64]))
    assert len(set(assign_bursts(media)["burst_id"].to_pylist())) == 2
