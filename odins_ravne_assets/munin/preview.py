"""Pictures for the Dagster UI: a contact sheet of a camera's most confident detections.

Dagster renders Markdown metadata, including images inlined as base64 PNG, so a user browsing a
camera's ``detections`` materialization sees what was found without opening a file.

The sheet wastes no space: rows of up to three photos, each row scaled to the sheet's width (a row
of two is taller than a row of three; nothing is letterboxed), photos split evenly over the rows.
Every box is drawn with its label and confidence, and every tile has a caption strip under it: the
best detection's label and confidence, how many more boxes, and the file.
"""

from __future__ import annotations

import base64
import io
import math

from PIL import Image, ImageDraw, ImageFont

from gpu_ops.media import load_image, media_type_for

COLORS = {"animal": (46, 160, 67), "person": (31, 111, 235), "vehicle": (219, 109, 40)}
OTHER_COLOR = (120, 120, 120)
COLUMNS = 3
GUTTER = 4  # white between tiles
CAPTION_HEIGHT = 20
BOXES_PER_TILE = 10
BACKGROUND = (255, 255, 255)


def contact_sheet(detections: list[dict], camera_storage, *, tiles: int = 6, tile_side: int = 240) -> bytes | None:
    """PNG bytes: the best detections of each of up to ``tiles`` photos, labelled; None if none.

    ``tile_side`` is a tile's width in the longest row; the sheet is ``COLUMNS * tile_side`` wide at most.
    """
    best: dict[str, list[dict]] = {}
    for det in sorted(detections, key=lambda d: -d["conf"]):
        best.setdefault(det["file_path"], []).append(det)
    chosen = [(path, dets) for path, dets in sorted(best.items(), key=lambda kv: (-kv[1][0]["conf"], kv[0]))
              if media_type_for(path) == "image"][:tiles]  # video frames would need decoding the clip again
    photos = []
    for file_path, dets in chosen:
        with camera_storage.local_copy(file_path) as path:
            photos.append((file_path, dets, Image.fromarray(load_image(path, max_side=tile_side * 3))))
    return sheet_png(photos, tile_side=tile_side) if photos else None


def sheet_png(photos: list[tuple[str, list[dict], Image.Image]], *, tile_side: int = 240, columns: int = COLUMNS) -> bytes:
    """The layout alone: ``(name, boxes, picture)`` tiles in rows of up to ``columns``, each row
    filling the width, every box drawn with its tag and every tile captioned. A box is a detection
    row's dict (``category``, ``label``, ``conf``, ``bbox_x`` .. ``bbox_h``; ``conf`` None for a box
    by eye, tagged with its label alone), the first the one the caption names."""
    n_rows = math.ceil(len(photos) / columns)
    columns = math.ceil(len(photos) / n_rows)  # four photos are two rows of two, not three and one
    width = columns * tile_side + (columns - 1) * GUTTER
    rows = _split_evenly(photos, n_rows)
    laid_out = [_row_tiles(row, width) for row in rows]
    height = sum(h + CAPTION_HEIGHT for _, h in laid_out) + GUTTER * (len(laid_out) - 1)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    y = 0
    for row, (widths, row_height) in zip(rows, laid_out):
        x = 0
        for (name, dets, image), tile_width in zip(row, widths):
            tile = image.convert("RGB").resize((tile_width, row_height), Image.LANCZOS)
            _draw_boxes(tile, dets[:BOXES_PER_TILE], font)
            sheet.paste(tile, (x, y))
            more = f" +{len(dets) - 1}" if len(dets) > 1 else ""
            best = f"{_tag(dets[0])}{more}  " if dets else ""
            draw.text((x + 3, y + row_height + 3), _fit(draw, f"{best}{name}", font, tile_width - 6), fill=(34, 34, 34), font=font)
            x += tile_width + GUTTER
        y += row_height + CAPTION_HEIGHT + GUTTER
    buffer = io.BytesIO()
    sheet.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def _split_evenly(items: list, n_rows: int) -> list[list]:
    """``items`` in ``n_rows`` rows whose lengths differ by one at most, the longer rows first."""
    size, extra = divmod(len(items), n_rows)
    rows, start = [], 0
    for i in range(n_rows):
        end = start + size + (1 if i < extra else 0)
        rows.append(items[start:end])
        start = end
    return rows


def _row_tiles(row: list, width: int) -> tuple[list[int], int]:
    """Tile widths and the row height that fill ``width`` exactly with the photos at their aspect ratio."""
    ratios = [image.width / image.height for _, _, image in row]
    inner = width - GUTTER * (len(row) - 1)
    height = max(1, round(inner / sum(ratios)))
    widths = [max(1, round(r * height)) for r in ratios]
    widths[-1] += inner - sum(widths)  # rounding: the last tile takes the odd pixels
    return widths, height


def _draw_boxes(tile: Image.Image, dets: list[dict], font) -> None:
    draw = ImageDraw.Draw(tile)
    width, height = tile.size
    for det in reversed(dets):  # the most confident last, so its tag is on top
        x, y = det["bbox_x"] * width, det["bbox_y"] * height
        w, h = det["bbox_w"] * width, det["bbox_h"] * height
        color = COLORS.get(det["category"], OTHER_COLOR)
        draw.rectangle([x, y, x + w, y + h], outline=color, width=2)
        # A box no detector drew says where it came from (the camera background).
        tag = _tag(det) + (" background" if det.get("source") == "background" else "")
        left, top, right, bottom = draw.textbbox((0, 0), tag, font=font)
        tag_w, tag_h = right - left + 4, bottom - top + 4
        # Above the box where there is room, else just inside its top edge.
        tx, ty = min(max(0.0, x), max(0.0, width - tag_w)), y - tag_h if y >= tag_h else y
        draw.rectangle([tx, ty, tx + tag_w, ty + tag_h], fill=color)
        draw.text((tx + 2 - left, ty + 2 - top), tag, fill=(255, 255, 255), font=font)


def _tag(det: dict) -> str:
    return det["label"] if det.get("conf") is None else f"{det['label']} {det['conf']:.2f}"


def _fit(draw: ImageDraw.ImageDraw, text: str, font, max_width: int) -> str:
    """``text`` cut with an ellipsis to fit ``max_width`` pixels."""
    if draw.textlength(text, font=font) <= max_width:
        return text
    while text and draw.textlength(text + "…", font=font) > max_width:
        text = text[:-1]
    return text + "…"


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
