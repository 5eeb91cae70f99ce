"""Constructed camera-trap bursts whose right answer is known, for tests and the evaluation.

Each burst imitates a night-time infrared trigger: a grayscale scene (smooth terrain, tree trunks,
vignetting from the IR flash), fresh sensor noise in every frame, the camera's info bars at the top
and bottom with a time and a frame counter that change, and, depending on the kind, a subject that
walks through, a subject that stands still, the camera shaking, the exposure changing, vegetation
waving or the light changing. The truth is the subject's box in every frame it is in.

``python -m bench.burst_scenes --out DIR`` writes a set as JPEGs (one folder per camera, EXIF time
written so :mod:`gpu_ops.bursts` groups them) plus ``observations.csv`` in the Camtrap DP
observations format, for ``python -m bench.evaluate``. These sets are constructed, not real:
figures measured on them say the method works as designed, not how it does on a real camera.
"""

from __future__ import annotations

import argparse
import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

KINDS = (
    "moving",  # a subject walks across a static, noisy scene
    "shake",  # the same, with the camera shaking between frames
    "exposure",  # the same, with the exposure changing between frames
    "vegetation",  # the same, beside waving vegetation
    "still",  # a subject that does not move at all (motion must stay silent)
    "empty_wind",  # nothing but waving vegetation and a shaking camera
    "empty_light",  # nothing but the light changing across the scene
)

# The characters the info bar prints, as 5x3 bitmaps: enough to make text that changes per frame.
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", ":": "000010000010000", "/": "001001010100100",
    "-": "000000111000000", " ": "000000000000000", "C": "111100100100111",
}


@dataclass
class Burst:
    kind: str
    frames: list[np.ndarray]  # RGB uint8 (gray replicated, as an IR camera's JPEG is)
    truth: list[list[tuple[float, float, float, float]]]  # per frame: normalized subject boxes


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / (field.std() + 1e-9)


def _scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A static night scene: terrain, a few trunks, texture, the IR flash's fall-off."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 70 + 25 * _smooth_noise(rng, (h, w), h / 8) + 8 * _smooth_noise(rng, (h, w), 2.0)
    base += 30 * (yy / h)  # the ground nearer the camera is lit more
    for _ in range(rng.integers(2, 5)):
        x0, tw = rng.integers(0, w), rng.integers(w // 40, w // 12)
        shade = rng.uniform(-35, 35)
        base[:, max(0, x0 - tw // 2) : x0 + tw // 2] += shade
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    vignette = 1.0 - 0.45 * np.clip(r2 / 2, 0, 1)
    return (base * vignette).astype(np.float32)


def _animal_mask(h: int, w: int, size: float, rng: np.random.Generator) -> np.ndarray:
    """A four-legged silhouette about ``size`` of the frame width: body, head, neck, legs."""
    bw = max(8, int(size * w))
    bh = max(5, int(bw * 0.45))
    mh, mw = int(bh * 2.1), int(bw * 1.35)
    yy, xx = np.mgrid[0:mh, 0:mw]
    cy, cx = mh * 0.45, mw * 0.45
    body = ((yy - cy) / (bh / 2)) ** 2 + ((xx - cx) / (bw / 2)) ** 2 <= 1
    hx, hy, hr = cx + bw * 0.55, cy - bh * 0.55, bh * 0.38
    head = (yy - hy) ** 2 + (xx - hx) ** 2 <= hr**2
    neck = (np.abs(xx - (cx + bw * 0.42)) < bh * 0.2) & (yy > hy) & (yy < cy)
    legs = np.zeros_like(body)
    for lx in (cx - bw * 0.35, cx - bw * 0.2, cx + bw * 0.2, cx + bw * 0.33):
        legs |= (np.abs(xx - lx) < max(1, bw * 0.04)) & (yy > cy) & (yy < cy + bh * 1.05)
    mask = body | head | neck | legs
    ys, xs = np.nonzero(mask)
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _paste(img: np.ndarray, mask: np.ndarray, top: int, left: int, tone: np.ndarray) -> tuple[float, float, float, float] | None:
    h, w = img.shape
    mh, mw = mask.shape
    y0, x0 = max(0, top), max(0, left)
    y1, x1 = min(h, top + mh), min(w, left + mw)
    if y1 <= y0 or x1 <= x0:
        return None
    sub = mask[y0 - top : y1 - top, x0 - left : x1 - left]
    region = img[y0:y1, x0:x1]
    region[sub] = tone[y0 - top : y1 - top, x0 - left : x1 - left][sub]
    ys, xs = np.nonzero(sub)
    if ys.size == 0:
        return None
    return ((x0 + xs.min()) / w, (y0 + ys.min()) / h, (xs.max() - xs.min() + 1) / w, (ys.max() - ys.min() + 1) / h)


def draw_info_bars(img: np.ndarray, frame: int, n: int, when: datetime) -> None:
    """Black bands with white text at top and bottom, as most trail cameras print."""
    h, w = img.shape
    bar = max(6, h // 22)
    img[:bar] = 8
    img[h - bar :] = 8
    scale = max(1, bar // 7)
    texts = (f"{frame + 1}/{n} 18C", when.strftime("%Y-%m-%d %H:%M:%S"))
    for text, row in ((texts[0], 1), (texts[1], h - bar + 1)):
        x = 4
        for ch in text:
            glyph = np.array([int(c) for c in _GLYPHS.get(ch, _GLYPHS[" "])], bool).reshape(5, 3)
            big = np.kron(glyph, np.ones((scale, scale), bool))
            gh, gw = big.shape
            if x + gw >= w:
                break
            img[row : row + gh, x : x + gw][big] = 235
            x += gw + scale


def make_burst(kind: str, seed: int, *, size: tuple[int, int] = (480, 640), n_frames: int = 5,
               animal_size: float | None = None, contrast: float | None = None,
               start: datetime | None = None) -> Burst:
    """One constructed burst of ``kind`` (see :data:`KINDS`), reproducible from ``seed``."""
    if kind not in KINDS:
        raise ValueError(f"unknown burst kind '{kind}': use one of {', '.join(KINDS)}")
    rng = np.random.default_rng(seed)
    h, w = size
    pad = max(8, w // 30)  # shake moves a window over a slightly larger scene
    scene = _scene(rng, h + 2 * pad, w + 2 * pad)
    start = start or datetime(2024, 5, 1, 2, 0, 0) + timedelta(minutes=int(rng.integers(0, 600)))

    has_animal = kind in ("moving", "shake", "exposure", "vegetation", "still")
    if has_animal:
        asize = animal_size if animal_size is not None else float(rng.uniform(0.08, 0.16))
        mask = _animal_mask(h, w, asize, rng)
        mh, mw = mask.shape
        sign = rng.choice([-1.0, 1.0])
        tone_delta = contrast if contrast is not None else float(rng.uniform(22, 40))
        tone_delta *= sign  # IR fur is brighter or darker than the ground, depending on distance
        top = int(rng.integers(int(h * 0.3), max(int(h * 0.3) + 1, int(h * 0.85) - mh)))
        if kind == "still":
            lefts = [int(rng.integers(pad, w - mw - pad))] * n_frames
        else:
            # Walks across the frame: far enough between frames that the median sees the ground.
            step = max(mw * 1.1, w / (n_frames + 1))
            x_start = float(rng.uniform(-0.2 * mw, max(1.0, w - step * (n_frames - 1) - 0.8 * mw)))
            direction = rng.choice([-1, 1])
            lefts = [int(x_start + step * k) for k in range(n_frames)]
            if direction < 0:
                lefts = [w - mw - x for x in lefts]
    veg = kind in ("vegetation", "empty_wind")
    if veg:
        vx0, vy0 = int(rng.integers(0, w // 2)), int(rng.integers(h // 6, h // 2))
        vw, vh = w // 3, h // 3
        leaves_base = 40 * _smooth_noise(rng, (vh + 20, vw + 20), 1.5)

    frames, truth = [], []
    for k in range(n_frames):
        dy = dx = 0
        if kind in ("shake", "empty_wind"):
            dy, dx = (int(v) for v in rng.integers(-pad // 2, pad // 2 + 1, size=2))
        img = scene[pad + dy : pad + dy + h, pad + dx : pad + dx + w].copy()
        if veg:
            oy, ox = (int(v) for v in rng.integers(0, 7, size=2))
            leaves = leaves_base[oy : oy + vh, ox : ox + vw]
            lm = np.abs(leaves) > 12
            patch = img[vy0 : vy0 + vh, vx0 : vx0 + vw]
            ph, pw = patch.shape
            patch[lm[:ph, :pw]] += leaves[:ph, :pw][lm[:ph, :pw]]
        boxes = []
        if has_animal:
            ay, ax = top, lefts[k]
            under = img[max(0, ay) : ay + mh, max(0, ax) : ax + mw]
            level = float(np.median(under)) if under.size else float(np.median(img))
            # Fur: the subject's own level plus a fine texture, fresh per frame like the noise.
            tone = level + tone_delta + 6 * _smooth_noise(rng, img.shape, 1.0)
            box = _paste(img, mask, ay, ax, tone)
            if box is not None:
                boxes.append(box)
        if kind == "exposure":
            img = img * float(rng.uniform(0.6, 1.5)) + float(rng.uniform(-15, 15))
        if kind == "empty_light":
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            angle = rng.uniform(0, 2 * np.pi)
            ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
            img = img * float(rng.uniform(0.7, 1.4)) + 30 * float(rng.uniform(-1, 1)) * ramp
        img = img + rng.normal(0, 4.0, size=img.shape)  # fresh sensor noise in every frame
        draw_info_bars(img, k, n_frames, start + timedelta(seconds=k))
        gray = np.clip(img, 0, 255).astype(np.uint8)
        frames.append(np.repeat(gray[..., None], 3, axis=2))
        truth.append(boxes)
    return Burst(kind=kind, frames=frames, truth=truth)


def exif_bytes(when: datetime) -> bytes:
    exif = Image.Exif()
    exif[0x0110] = "Constructed IR burst"  # Model
    exif.get_ifd(0x8769)[0x9003] = when.strftime("%Y:%m:%d %H:%M:%S")  # DateTimeOriginal
    return exif.tobytes()


def write_set(out: Path, *, bursts_per_kind: int = 4, n_frames: int = 5, seed: int = 0,
              size: tuple[int, int] = (720, 960)) -> Path:
    """Write a constructed set under ``out`` (one camera folder per kind); returns observations.csv."""
    out = Path(out)
    rows = []
    for kind_index, kind in enumerate(KINDS):
        camera = out / f"constructed-{kind}"
        camera.mkdir(parents=True, exist_ok=True)
        for b in range(bursts_per_kind):
            start = datetime(2024, 5, 1, 1, 0, 0) + timedelta(hours=b, minutes=kind_index)
            burst = make_burst(kind, seed * 1000 + kind_index * 100 + b, size=size, n_frames=n_frames, start=start)
            for k, (frame, boxes) in enumerate(zip(burst.frames, burst.truth)):
                name = f"IMG_{b:03d}{k:02d}.JPG"
                when = start + timedelta(seconds=k)
                buffer = io.BytesIO()
                Image.fromarray(frame).save(buffer, "JPEG", quality=88, exif=exif_bytes(when))
                (camera / name).write_bytes(buffer.getvalue())
                rows.extend(truth_rows(f"{camera.name}/{name}", boxes))
    return write_truth(out / "observations.csv", rows)


def truth_rows(media_id: str, boxes) -> list[dict]:
    """Camtrap DP observation rows of one image's true boxes; one blank row when it has none."""
    if not boxes:
        return [{"observationID": f"{media_id}#blank", "mediaID": media_id, "filePath": media_id,
                 "observationType": "blank", "bboxX": "", "bboxY": "", "bboxWidth": "", "bboxHeight": ""}]
    return [
        {"observationID": f"{media_id}#{j}", "mediaID": media_id, "filePath": media_id, "observationType": "animal",
         "bboxX": f"{x:.5f}", "bboxY": f"{y:.5f}", "bboxWidth": f"{bw:.5f}", "bboxHeight": f"{bh:.5f}"}
        for j, (x, y, bw, bh) in enumerate(boxes)
    ]


def write_truth(path: Path, rows: list[dict]) -> Path:
    """The ground truth as ``observations.csv``, the file ``python -m bench.evaluate`` reads."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a constructed infrared-like burst set with known boxes.")
    parser.add_argument("--out", required=True, type=Path, help="folder to write (one sub-folder per camera)")
    parser.add_argument("--bursts-per-kind", type=int, default=4)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    truth = write_set(args.out, bursts_per_kind=args.bursts_per_kind, n_frames=args.frames, seed=args.seed)
    print(f"wrote {truth} and the images beside it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
