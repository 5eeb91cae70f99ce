"""Training frames made from real parts: real animal cut-outs pasted on real camera-trap frames.

Issue 13, direction 4: the realdata tune part has 33 animal frames, too few to teach a detector
what an animal looks like to a camera trap; composites add animals it has not seen, at sizes and
places it has not seen them, on the backgrounds it will see. :func:`composite` pastes one or more
cut-outs (RGBA photographs; the recipe's are Tux Paint's real animal photo stamps,
``odins_ravne_assets.sample_data.sources.CUTOUTS``) on a frame and returns the frame with every
box: its own (kept, as labelled) and one per pasted animal, the bounding box of the cut-out's
alpha > 0.5 inside the frame.

Each paste is made to look like the frame's camera took it:

- size log-uniform between ``min_width`` and ``max_width`` of the frame's width (camera traps see
  a mouse at 5 % and a deer at half the frame), standing with its feet between 40 % of the height
  and 97 % (a camera's info bar is not ground), mirrored half of the time;
- on an infrared frame (:func:`gpu_ops.background.is_infrared`) turned grey (infrared film sees no
  colour), its tone curve bent (gamma), its mean brightness set to that of the background under it
  times 0.7-1.6 (fur glows or not under the illuminator), its contrast cut, and tinted as the frame
  is; on a daylight frame its brightness pulled part of the way towards the background's and its
  colours jittered;
- blurred in proportion to its size (a close animal is out of focus, a moving one smeared), its
  edge feathered; then the whole frame gets sensor noise and is JPEG-encoded again at a camera's
  quality.

A paste less than ``min_visible`` inside the frame, or overlapping a box already there by more than
``max_overlap`` of either, is placed again (a few tries, then left out). Deterministic: the same
frame, cut-outs and ``numpy`` generator state give the same composite.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from gpu_ops.background import is_infrared
from gpu_ops.boxes import Box, intersection
from gpu_ops.finetune import Sample


@dataclass(frozen=True)
class CompositeConfig:
    min_width: float = 0.06  # of the frame's width
    max_width: float = 0.50
    max_height: float = 0.9  # of the frame's height
    bottom: tuple[float, float] = (0.4, 0.97)  # where the animal's lowest point lands, of the height (above an info bar)
    second_animal: float = 0.2  # chance of a second paste
    min_visible: float = 0.4
    max_overlap: float = 0.3
    tries: int = 5
    ir_gain: tuple[float, float] = (0.7, 1.6)
    ir_gamma: tuple[float, float] = (0.5, 1.2)
    ir_contrast: tuple[float, float] = (0.4, 1.0)
    blur_per_pixel: float = 0.006  # Gaussian sigma, up to this times the paste's width in pixels
    noise: tuple[float, float] = (1.0, 6.0)  # sensor noise sigma, grey levels
    jpeg_quality: tuple[int, int] = (60, 92)


def _alpha_crop(cutout: np.ndarray) -> np.ndarray:
    if cutout.ndim != 3 or cutout.shape[2] != 4:
        raise ValueError(f"a cut-out is RGBA (H, W, 4); got shape {cutout.shape}")
    rows, cols = np.nonzero(cutout[..., 3] > 127)
    if not len(rows):
        raise ValueError("a cut-out with no opaque pixel")
    return cutout[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def _overlap(a: Box, b: Box) -> float:
    """The shared area as a share of the smaller box's."""
    smaller = min(a[2] * a[3], b[2] * b[3])
    return intersection(a, b) / smaller if smaller > 0 else 0.0


def _tone(rgb: np.ndarray, alpha: np.ndarray, under: np.ndarray, infrared: bool,
          rng: np.random.Generator, config: CompositeConfig) -> np.ndarray:
    """The cut-out's colours (float, 0-255) made to sit in the frame ``under`` it."""
    weight = alpha / max(float(alpha.sum()), 1e-6)
    grey_under = under.mean(axis=2)
    background = float((grey_under * weight).sum())
    if infrared:
        grey = rgb[..., 0] * 0.3 + rgb[..., 1] * 0.4 + rgb[..., 2] * 0.3
        grey = 255.0 * (grey / 255.0) ** rng.uniform(*config.ir_gamma)
        mean = float((grey * weight).sum())
        target = background * rng.uniform(*config.ir_gain)
        grey = (grey - mean) * rng.uniform(*config.ir_contrast) + target
        tint = under.reshape(-1, 3).mean(0) / max(float(grey_under.mean()), 1e-6)  # the frame's own cast
        return np.clip(grey[..., None] * tint[None, None, :], 0, 255)
    mean = float((rgb.mean(axis=2) * weight).sum())
    toward = (max(background, 1.0) / max(mean, 1.0)) ** rng.uniform(0.2, 0.6)
    return np.clip(rgb * toward * rng.uniform(0.9, 1.1, size=3)[None, None, :], 0, 255)


def _paste(frame: np.ndarray, cutout: np.ndarray, taken: list[Box], infrared: bool,
           rng: np.random.Generator, config: CompositeConfig) -> Box | None:
    """Paste ``cutout`` into ``frame`` (float RGB, in place); its box, or None where no place was found."""
    height, width = frame.shape[:2]
    ratio = cutout.shape[0] / cutout.shape[1]
    for _ in range(config.tries):
        w = width * float(np.exp(rng.uniform(np.log(config.min_width), np.log(config.max_width))))
        w = min(w, config.max_height * height / ratio)
        pw, ph = max(2, round(w)), max(2, round(w * ratio))
        x0 = round(rng.uniform(-0.15 * pw, width - 0.85 * pw))
        y0 = round(rng.uniform(*config.bottom) * height) - ph
        mirror = rng.random() < 0.5
        piece = Image.fromarray(cutout).resize((pw, ph), Image.LANCZOS)
        if mirror:
            piece = piece.transpose(Image.FLIP_LEFT_RIGHT)
        sigma = rng.uniform(0.0, config.blur_per_pixel) * pw
        rgba = np.asarray(piece).astype(np.float32)
        alpha = rgba[..., 3] / 255.0
        # The part inside the frame; the box is where the (sharp) alpha is over one half there.
        fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(width, x0 + pw), min(height, y0 + ph)
        if fx1 <= fx0 or fy1 <= fy0:
            continue
        inside = alpha[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
        solid = inside > 0.5
        if solid.sum() < config.min_visible * (alpha > 0.5).sum():
            continue
        rows, cols = np.nonzero(solid)
        box = ((fx0 + cols.min()) / width, (fy0 + rows.min()) / height,
               (cols.max() - cols.min() + 1) / width, (rows.max() - rows.min() + 1) / height)
        if any(_overlap(box, other) > config.max_overlap for other in taken):
            continue
        under = frame[fy0:fy1, fx0:fx1]
        rgb = rgba[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0, :3]
        toned = _tone(rgb, inside, under, infrared, rng, config)
        if sigma > 0.3:
            toned = np.asarray(Image.fromarray(toned.astype(np.uint8)).filter(ImageFilter.GaussianBlur(sigma)), dtype=np.float32)
        feather = max(0.6, sigma)
        soft = np.asarray(Image.fromarray((inside * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(feather)),
                          dtype=np.float32) / 255.0
        under[...] = under * (1.0 - soft[..., None]) + toned * soft[..., None]
        return box
    return None


def composite(sample: Sample, cutouts: list[np.ndarray], rng: np.random.Generator,
              config: CompositeConfig = CompositeConfig()) -> Sample:
    """``sample``'s frame with one (``second_animal`` of the time two) of ``cutouts`` (RGBA ``uint8``,
    chosen by ``rng``) pasted in, as its camera would have taken them (module doc); its boxes are the
    frame's own and the pasted animals', each an ``"animal"``."""
    if not cutouts:
        raise ValueError("composite needs at least one cut-out")
    infrared = is_infrared(sample.image)
    frame = sample.image.astype(np.float32)
    boxes, kinds = list(sample.boxes), list(sample.kinds)
    for _ in range(2 if rng.random() < config.second_animal else 1):
        cutout = _alpha_crop(cutouts[int(rng.integers(len(cutouts)))])
        box = _paste(frame, cutout, boxes, infrared, rng, config)
        if box is not None:
            boxes.append(box)
            kinds.append("animal")
    # Sensor noise; on an infrared frame it is grey as the frame is.
    frame += rng.normal(0.0, rng.uniform(*config.noise), size=frame.shape[:2] + ((1,) if infrared else (3,)))
    encoded = io.BytesIO()
    Image.fromarray(np.clip(frame, 0, 255).round().astype(np.uint8)).save(
        encoded, format="JPEG", quality=int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1)))
    encoded.seek(0)
    with Image.open(encoded) as decoded:
        image = np.asarray(decoded.convert("RGB"))
    return Sample(image, tuple(boxes), tuple(kinds))
