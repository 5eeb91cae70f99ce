"""The sample camera cards: layout, EXIF as designed, broken files, idempotence, source extraction.

The build runs on stand-in source photographs made here (same file names, generated pixels), so
the tests are offline; one test checks the real, pinned photographs when they are already cached.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageDraw

from gpu_ops import media
from odins_ravne_assets.sample_data import __main__ as command
from odins_ravne_assets.sample_data import ARCHIVES, CAMERAS, SampleDataError, build_sample_data, fetch_sources
from odins_ravne_assets.sample_data.cameras import VIDEO_FPS, VIDEO_SECONDS, VIDEO_SIZE
from odins_ravne_assets.sample_data.sources import _cached_problems, _deb_data_member, _extract_tar, default_sources_dir

CAMERA_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def _stand_in_sources(root: Path) -> Path:
    """Every source photograph the build asks for, as generated pictures of the right kind."""
    rng = np.random.default_rng(7)
    for archive in ARCHIVES:
        folder = root / archive.name
        folder.mkdir(parents=True)
        for name in archive.members:
            if name.endswith(".png"):  # a cut-out animal: opaque body, transparent surround
                stamp = Image.new("RGBA", (200, 150), (0, 0, 0, 0))
                ImageDraw.Draw(stamp).ellipse((10, 20, 190, 140), fill=(120, 80, 40, 255))
                stamp.save(folder / name)
            else:  # a scene: smooth light plus texture, like a photo
                y, x = np.mgrid[0:600, 0:900]
                base = np.stack([x * 255 // 900, y * 255 // 600, np.full_like(x, 90)], -1)
                pixels = np.clip(base + rng.integers(0, 40, (600, 900, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / name, quality=90)
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:
    base = tmp_path_factory.mktemp("sample")
    sources = _stand_in_sources(base / "sources")
    dest = base / "cards"
    summary = build_sample_data(dest, sources=sources)
    return dest, summary, sources


def _exif(path: Path) -> Image.Exif:
    with Image.open(path) as img:
        return img.getexif()


def test_layout_one_folder_per_camera(built: tuple[Path, dict, Path]) -> None:
    dest, summary, _ = built
    folders = sorted(p.name for p in dest.iterdir() if p.is_dir())
    assert folders == sorted(c.camera_id for c in CAMERAS)
    assert all(CAMERA_ID.match(name) for name in folders)
    assert not [p for p in dest.iterdir() if p.is_file()]  # nothing at the top but cameras
    assert (dest / "cam-north-01" / "100RECNX").is_dir()  # one make writes a sub-folder
    files = [p for p in dest.rglob("*") if p.is_file()]
    assert len(files) == summary["files"] < 100
    assert sum(p.stat().st_size for p in files) == summary["bytes"] < 30_000_000
    assert not [p for p in files if p.name.endswith(".partial")]


def test_summary_counts_match_the_design(built: tuple[Path, dict, Path]) -> None:
    _, summary, _ = built
    cameras = summary["cameras"]
    assert cameras["cam-nogps-01"]["videos"] == 1
    assert cameras["cam-zero-01"]["broken"] == 5
    assert all(info["empty"] >= 2 for cid, info in cameras.items() if cid != "cam-zero-01")
    assert set(summary["coco_labels"]) >= {"dog", "horse", "cow", "sheep", "bear", "bird", "zebra", "giraffe", "elephant", "person"}
    kinds = Counter(row["kind"] for row in summary["truth"])
    assert kinds["video"] == 1 and kinds["ignored"] == 1 and kinds["no_exif"] == 1


def test_exif_time_and_gps_per_camera(built: tuple[Path, dict, Path]) -> None:
    dest, summary, _ = built
    expected_gps = {c.camera_id: c.gps for c in CAMERAS}
    for row in summary["truth"]:
        if row["kind"] not in ("image", "empty"):
            continue
        path = dest / row["camera_id"] / row["file_path"]
        probed = media.probe_media(path, camera_id=row["camera_id"], file_path=row["file_path"])
        assert probed["status"] == "ok", (path, probed["failure"])
        assert probed["timestamp_source"] == "exif"
        assert probed["timestamp"] == datetime.fromisoformat(row["timestamp"])
        gps = expected_gps[row["camera_id"]]
        if gps is None:
            assert probed["gps_status"] == "missing"
            assert ExifTags.IFD.GPSInfo not in _exif(path)  # no GPS block at all
        elif gps == (0.0, 0.0):
            assert probed["gps_status"] == "missing"  # the block is there, with the no-fix zeros
            assert _exif(path).get_ifd(ExifTags.IFD.GPSInfo)
        else:
            assert probed["gps_status"] == "ok"
            assert probed["latitude"] == pytest.approx(gps[0], abs=1e-6)
            assert probed["longitude"] == pytest.approx(gps[1], abs=1e-6)


def test_cameras_are_300_m_and_40_km_apart() -> None:
    by_id = {c.camera_id: c.gps for c in CAMERAS}

    def km(a: tuple[float, float], b: tuple[float, float]) -> float:
        lat1, lon1, lat2, lon2 = map(np.radians, (*a, *b))
        h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
        return float(2 * 6371.0 * np.arcsin(np.sqrt(h)))

    assert km(by_id["cam-north-01"], by_id["cam-north-02"]) == pytest.approx(0.3, abs=0.01)
    assert km(by_id["cam-north-01"], by_id["cam-south-01"]) == pytest.approx(40.0, abs=0.5)


def test_bursts_are_seconds_apart_and_events_far_apart(built: tuple[Path, dict, Path]) -> None:
    _, summary, _ = built
    for camera in CAMERAS:
        rows = [r for r in summary["truth"] if r["camera_id"] == camera.camera_id and r["event_id"]]
        times = sorted((datetime.fromisoformat(r["timestamp"]), r["event_id"]) for r in rows)
        for (t1, e1), (t2, e2) in zip(times, times[1:]):
            gap = (t2 - t1).total_seconds()
            if e1 == e2:
                assert 0 < gap <= 5, (camera.camera_id, e1, gap)
            else:
                assert gap > 600, (camera.camera_id, e1, e2, gap)


def test_broken_files_fail_as_designed(built: tuple[Path, dict, Path]) -> None:
    dest, summary, _ = built
    folder = dest / "cam-zero-01"
    expected = {
        "IMG_0090.JPG": "truncated",
        "IMG_0091.JPG": "empty file",
        "IMG_0092.JPG": "not a readable image",
        "IMG_0093.PNG": "decompression bomb",
        "VID_0094.MP4": "no video stream",
    }
    for name, reason in expected.items():
        row = media.probe_media(folder / name, camera_id="cam-zero-01", file_path=name)
        assert row["status"] == "failed", name
        assert reason in row["failure"], (name, row["failure"])
    no_exif = media.probe_media(folder / "IMG_0095.JPG", camera_id="cam-zero-01", file_path="IMG_0095.JPG")
    assert (no_exif["status"], no_exif["timestamp_source"]) == ("ok", "file_mtime")
    assert not _exif(folder / "IMG_0095.JPG")
    assert media.media_type_for(folder / "CAMERA_NOTES.TXT") is None


def test_video_has_frames_and_creation_time(built: tuple[Path, dict, Path]) -> None:
    dest, summary, _ = built
    row = next(r for r in summary["truth"] if r["kind"] == "video")
    probed = media.probe_media(dest / row["camera_id"] / row["file_path"], camera_id=row["camera_id"], file_path=row["file_path"])
    assert probed["status"] == "ok", probed["failure"]
    assert probed["frame_count"] == VIDEO_FPS * VIDEO_SECONDS
    assert (probed["width"], probed["height"]) == VIDEO_SIZE
    assert probed["timestamp_source"] == "video_metadata"
    assert probed["timestamp"] == datetime.fromisoformat(row["timestamp"])
    assert probed["make"] == "SPYPOINT"


def test_rebuild_is_idempotent_and_deterministic(built: tuple[Path, dict, Path], tmp_path: Path) -> None:
    dest, summary, sources = built

    def digests(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
        }

    before = digests(dest)
    stale = dest / "cam-south-01" / "IMG_0999.JPG"  # what an earlier design of the build wrote
    stale.write_bytes(b"old")
    mine = dest / "cam-south-01" / "my_notes.jpg"  # not a name the build writes: never touched
    mine.write_bytes(b"keep")
    again = build_sample_data(dest, sources=sources)
    assert again["written"] == 0 and again["unchanged"] == summary["files"]
    assert again["removed"] == 1 and not stale.exists()
    assert mine.read_bytes() == b"keep"
    mine.unlink()
    assert digests(dest) == before
    elsewhere = build_sample_data(tmp_path / "other", sources=sources)
    assert digests(tmp_path / "other") == before  # same bytes from a fresh build
    assert elsewhere["files"] == summary["files"]


def test_command_line_builds_the_cards_and_writes_the_truth(
    built: tuple[Path, dict, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    _, summary, sources = built
    # The stand-in photographs fail the pinned digests: take them as fetched instead of downloading.
    monkeypatch.setattr(command, "fetch_sources", lambda root: root)
    truth = tmp_path / "truth.json"
    assert command.main([str(tmp_path / "cards"), "--sources", str(sources), "--truth", str(truth)]) == 0
    assert json.loads(truth.read_text()) == summary["truth"]
    assert f"{summary['files']} files" in capsys.readouterr().out
    # ``python -m`` finds the package's entry point (the Makefile's dev target runs it so).
    shown = subprocess.run([sys.executable, "-m", "odins_ravne_assets.sample_data", "--help"],
                           capture_output=True, text=True, check=True)
    assert "python -m odins_ravne_assets.sample_data" in shown.stdout


def test_missing_source_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SampleDataError, match="fetch_sources"):
        build_sample_data(tmp_path / "cards", sources=tmp_path / "nothing-here")


def test_deb_extraction_takes_only_the_named_files(tmp_path: Path) -> None:
    # A .deb is an ar archive whose data.tar.xz holds the files; build a small one the same way.
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:xz") as tar:
        for name, body in [("./usr/share/a/wanted.png", b"png-bytes"), ("./usr/share/a/other.png", b"x")]:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    members = [(b"debian-binary", b"2.0\n"), (b"control.tar.xz", b"odd"), (b"data.tar.xz", payload.getvalue())]
    deb = bytearray(b"!<arch>\n")
    for name, body in members:
        deb += name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6) + b"100644".ljust(8)
        deb += str(len(body)).encode().ljust(10) + b"`\n" + body + (b"\n" if len(body) % 2 else b"")
    path = tmp_path / "pkg_1.0_all.deb"
    path.write_bytes(bytes(deb))
    data = _deb_data_member(path, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    _extract_tar(data, "r|xz", {"./usr/share/a/wanted.png": "mine.png"}, out)
    assert [p.name for p in out.iterdir()] == ["mine.png"]
    assert (out / "mine.png").read_bytes() == b"png-bytes"


def test_not_a_deb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fake.deb"
    path.write_text("hello")
    with pytest.raises(SampleDataError, match="not a Debian package"):
        _deb_data_member(path, tmp_path)


def test_real_sources_when_cached() -> None:
    root = default_sources_dir()
    problems = {a.name: _cached_problems(a, root / a.name) for a in ARCHIVES}
    if any(problems.values()):
        pytest.skip(f"real sample photographs not cached in {root}: python -m odins_ravne_assets.sample_data DEST fetches them")
    assert fetch_sources(root) == root  # all present and matching: nothing fetched
    with Image.open(root / "tuxpaint-stamps" / "dog.png") as stamp:
        assert stamp.mode == "RGBA"  # cut out along the outline
