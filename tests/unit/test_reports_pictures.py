"""Reports that show animals (issue 14, part 6) and the labelled, compact contact sheet of the Dagster UI.

Real crops (JPEGs written through a real local Storage, as Stage 1 writes them), real report pages
and thumbnails; the pages are checked as files here and rendered in Chromium in
tests/dagster/test_report_browser.py.
"""

from __future__ import annotations

import io
import re
import shutil
from datetime import datetime

import numpy as np
from PIL import Image

from gpu_ops import schemas
from gpu_ops.storage import Storage
from hugin_tables import table
from odins_ravne_assets.hugin.reports import EVENT_SIDE, GALLERY_SIDE, write_reports
from odins_ravne_assets.munin.preview import BACKGROUND, CAPTION_HEIGHT, COLORS, GUTTER, contact_sheet

JPEG_MAGIC = b"\xff\xd8\xff"


def _jpeg(size: tuple[int, int], color: tuple[int, int, int], *, gps: bool = False) -> bytes:
    image = Image.new("RGB", size, color)
    exif = Image.Exif()
    if gps:
        exif[0x8825] = {2: (62.0, 0.0, 0.0), 4: (10.0, 0.0, 0.0)}  # GPSInfo: where a sensitive species lives
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def _event(n: int, camera: str, species: str | None, conf: float, crop: str | None, *, category: str = "animal"):
    return {"camera_id": camera, "event_id": f"{camera}-e{n}", "category": category, "species": species,
            "scientific_name": {"elk": "Alces alces", "red fox": "Vulpes vulpes"}.get(species),
            "start": datetime(2024, 6, 1, 4 + n), "end": datetime(2024, 6, 1, 4 + n, 5), "n_media": 2,
            "max_count": 1, "best_conf": conf, "representative_file_path": f"IMG_{n:04d}.JPG",
            "representative_crop_path": crop}


def _project(tmp_path):
    """Two cameras: elk twice (the better one's crop carries GPS EXIF), a fox whose best crop is gone,
    a lynx with no crop at all, a person."""
    output = Storage(str(tmp_path / "out"))
    crops = {
        "crops/cam-a/elk-good.jpg": _jpeg((400, 300), (120, 80, 40), gps=True),
        "crops/cam-a/elk-weak.jpg": _jpeg((30, 20), (90, 90, 90)),
        "crops/cam-b/fox.jpg": _jpeg((60, 90), (200, 90, 20)),
        "crops/cam-b/person.jpg": _jpeg((60, 90), (10, 10, 200)),
    }
    for key, data in crops.items():
        output.write_bytes(key, data)
    events = table(schemas.EVENTS, [
        _event(0, "cam-a", "elk", 0.95, "crops/cam-a/elk-good.jpg"),
        _event(1, "cam-a", "elk", 0.55, "crops/cam-a/elk-weak.jpg"),
        _event(2, "cam-b", "red fox", 0.90, "crops/cam-b/gone.jpg"),  # deleted since: the next best shows
        _event(3, "cam-b", "red fox", 0.60, "crops/cam-b/fox.jpg"),
        _event(4, "cam-b", "lynx", 0.80, None),
        _event(5, "cam-b", "human", 0.99, "crops/cam-b/person.jpg", category="person"),
    ])
    return output, events


def _pictures(page: str) -> list[dict]:
    return [dict(re.findall(r"(\w+)='([^']*)'", tag)) for tag in re.findall(r"<img class='(?:animal|event)'[^>]*>", page)]


def test_each_species_shows_its_best_crop_captioned_and_each_event_its_own(tmp_path):
    output, events = _project(tmp_path)
    reports = write_reports(tmp_path / "reports", events=events, crops=output)

    project = reports["project"].html_path
    page = project.read_text()
    gallery = _pictures(page)
    # elk (its most confident crop), red fox (the next best: the best crop is gone); lynx has no picture.
    assert [p["alt"] for p in gallery] == ["elk, 2024-06-01 04:00, cam-a, conf 0.95",
                                           "red fox, 2024-06-01 07:00, cam-b, conf 0.60"]
    assert "<b>lynx</b>" in page and "no picture" in page
    assert "<b>elk</b> <i>Alces alces</i><br>2024-06-01 04:00 &middot; cam-a &middot; conf 0.95" in page
    assert not any("human" in p["alt"] for p in gallery)  # people are never pictured
    assert len(list((project.parent / "thumbs").iterdir())) == len(gallery)
    for picture in gallery:
        assert picture["src"].startswith("thumbs/")  # relative: the folder can be moved
        thumb = Image.open(project.parent / picture["src"])
        assert thumb.format == "JPEG" and max(thumb.size) == GALLERY_SIDE
        assert (thumb.width, thumb.height) == (int(picture["width"]), int(picture["height"]))
        assert not thumb.getexif()  # the crop's GPS is not copied into a report that is shared

    # A camera page pictures every animal event that has a crop, in its row, and nothing for the person.
    camera_b = reports["cam-b"].html_path
    tags = re.findall(r"<img class='event'[^>]*>", camera_b.read_text())
    assert len(tags) == 1 and "red fox, 2024-06-01 07:00, cam-b, conf 0.60" in tags[0] and "loading='lazy'" in tags[0]
    event_thumb = Image.open(camera_b.parent / re.search(r"src='([^']+)'", tags[0]).group(1))
    assert max(event_thumb.size) == EVENT_SIDE
    # The weak elk crop (30 x 20 px) is enlarged to the thumbnail's size, not shown as a speck.
    camera_a = reports["cam-a"].html_path.read_text()
    weak = re.search(r"<img class='event'[^>]*conf 0\.55'[^>]*>", camera_a).group(0)
    assert "width='120' height='80'" in weak

    # Every file a report lists exists, and a moved report folder still finds every picture.
    for report in reports.values():
        assert all(p.exists() for p in report.files)
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "reports", moved)
    shutil.rmtree(tmp_path / "reports")
    for page_path in moved.rglob("index.html"):
        for src in re.findall(r"<img [^>]*src='([^']+)'", page_path.read_text()):
            assert (page_path.parent / src).is_file(), (page_path, src)


def test_without_crops_the_report_has_no_pictures_and_still_renders(tmp_path):
    _, events = _project(tmp_path)
    reports = write_reports(tmp_path / "reports", events=events)
    page = reports["project"].html_path.read_text()
    assert _pictures(page) == [] and page.count("no picture") == 3
    assert not (tmp_path / "reports" / "thumbs").exists()


def _photo(path, size, color, box):
    pixels = np.full((size[1], size[0], 3), color, np.uint8)
    x, y, w, h = box
    pixels[int(y * size[1]):int((y + h) * size[1]), int(x * size[0]):int((x + w) * size[0])] = (250, 250, 250)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, "JPEG", quality=95)


def _detections(n: int) -> list[dict]:
    return [{"file_path": f"IMG_{i:04d}.JPG", "category": "animal", "label": "deer", "conf": 0.9 - i / 100,
             "bbox_x": 0.3, "bbox_y": 0.4, "bbox_w": 0.3, "bbox_h": 0.3} for i in range(n)]


def test_contact_sheet_is_compact_and_labelled(tmp_path):
    """No letterboxing or empty cells: five 4:3 photos are rows of three and two, each row as wide as the
    sheet; every box is drawn with a label tag, every tile has a caption strip under it."""
    for i in range(5):
        _photo(tmp_path / f"IMG_{i:04d}.JPG", (800, 600), (30, 60, 30), (0.3, 0.4, 0.3, 0.3))
    sheet = Image.open(io.BytesIO(contact_sheet(_detections(5), Storage(str(tmp_path)), tiles=5, tile_side=240)))
    width = 3 * 240 + 2 * GUTTER
    row3 = round((width - 2 * GUTTER) / 3 / (4 / 3))  # three 4:3 photos filling the width
    row2 = round((width - GUTTER) / 2 / (4 / 3))
    assert sheet.size == (width, row3 + row2 + 2 * CAPTION_HEIGHT + GUTTER)
    pixels = np.asarray(sheet.convert("RGB")).astype(int)
    background = np.all(pixels == BACKGROUND, axis=2)
    captions_and_gutters = (2 * CAPTION_HEIGHT + GUTTER) * width + 2 * GUTTER * row3 + GUTTER * row2
    assert background.sum() <= captions_and_gutters  # everything else is photo
    assert np.all(pixels < 40, axis=2).mean() < 0.01  # no black padding (the old sheet's empty cells)
    # Box outline and its label tag in the animal colour, on every tile.
    green = np.all(pixels == COLORS["animal"], axis=2)
    for left in (0, 240 + GUTTER, 2 * (240 + GUTTER)):
        assert green[:row3, left:left + 240].sum() > 200
    second_row = row3 + CAPTION_HEIGHT + GUTTER
    for left in (0, width // 2 + GUTTER):
        assert green[second_row:second_row + row2, left:left + width // 2 - GUTTER].sum() > 200
    # The caption strips hold dark text on white.
    strip = pixels[row3:row3 + CAPTION_HEIGHT, :240]
    assert (strip.sum(axis=2) < 200).sum() > 50


def test_contact_sheet_of_four_photos_is_two_by_two(tmp_path):
    for i in range(4):
        _photo(tmp_path / f"IMG_{i:04d}.JPG", (600, 800), (60, 30, 30), (0.2, 0.2, 0.5, 0.5))  # portrait
    sheet = Image.open(io.BytesIO(contact_sheet(_detections(4), Storage(str(tmp_path)))))
    width = 2 * 240 + GUTTER
    row = round((width - GUTTER) / 2 / (3 / 4))
    assert sheet.size == (width, 2 * (row + CAPTION_HEIGHT) + GUTTER)
    assert contact_sheet([], Storage(str(tmp_path))) is None
