"""Pictures for the Dagster UI: a contact sheet of a camera's most confident detections.

Dagster renders Markdown metadata, including images inlined as base64 PNG, so a user browsing a
camera's ``detections`` materialization sees what was found without opening a file.
"""

from __future__ import annotations

import base64
import io

from PIL import Image, ImageDraw

from gpu_ops.media import load_image, media_type_for

COLORS = {"animal": (46, 160, 67), "person": (31, 111, 235), "vehicle": (219, 109, 40)}


def contact_sheet(detections: list[dict], camera_storage, *, tiles: int = 6, tile_side: int = 240) -> bytes | None:
    """PNG bytes: the best detection of each of up to ``tiles`` media, boxes drawn; None if none."""
    best: dict[str, list[dict]] = {}
    for det in sorted(detections, key=lambda d: -d["conf"]):
        best.setdefault(det["file_path"], []).append(det)
    chosen = sorted(best.items(), key=lambda kv: -kv[1][0]["conf"])[:tiles]
    images = []
    for file_path, dets in chosen:
        if media_type_for(file_path) != "image":
            continue  # video frames would need decoding the clip again
        with camera_storage.local_copy(file_path) as path:
            image = Image.fromarray(load_image(path, max_side=tile_side * 2))
        draw = ImageDraw.Draw(image)
        width, height = image.size
        for det in dets[:10]:
            x, y, w, h = det["bbox_x"] * width, det["bbox_y"] * height, det["bbox_w"] * width, det["bbox_h"] * height
            color = COLORS.get(det["category"], (200, 200, 200))
            draw.rectangle([x, y, x + w, y + h], outline=color, width=3)
            draw.text((x + 4, y + 2), f"{det['label']} {det['conf']:.2f}", fill=color)
        image.thumbnail((tile_side, tile_side))
        images.append(image)
    if not images:
        return None
    columns = min(3, len(images))
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * tile_side, rows * tile_side), (24, 24, 24))
    for i, image in enumerate(images):
        sheet.paste(image, ((i % columns) * tile_side, (i // columns) * tile_side))
    buffer = io.BytesIO()
    sheet.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
