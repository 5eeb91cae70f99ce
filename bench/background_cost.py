"""What the camera background costs per image, next to the detector, for a camera of many triggers:

    python -m bench.background_cost [--triggers 2000] [--photos 24]

The baseline, measured in the same run: the default detector (416 px, the model alone) on the
canvases the engine makes of ``--photos`` real camera-trap photographs (``../shared/realdata``, or
ultralytics' two bundled photographs where it is missing). Then, per image, what the background adds:
the thumbnail (``gpu_ops.background.thumbnail`` from the engine's decode, on the decode thread in
Stage 1) and the camera comparison (``missed_boxes``) over one camera of ``--triggers`` single
photos, made from those photographs' thumbnails with camera noise. Prints ms per image and the
ratio to the detector.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.realdata import REALDATA
from gpu_ops.background import Trigger, missed_boxes, thumbnail
from gpu_ops.engine import decode_for_detection


def _photos(count: int) -> list[Path]:
    found = sorted(p for p in REALDATA.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    if not found:
        import ultralytics  # noqa: PLC0415 - only without realdata

        found = sorted((Path(ultralytics.__file__).parent / "assets").glob("*.jpg"))
    return found[:count]


def run(triggers: int, photos: int) -> dict:
    from gpu_ops.detector_loader import load_detector

    detector = load_detector("default", image_size=416, conf_threshold=0.1, animal_score="sum")
    decoded = [decode_for_detection(path, detector) for path in _photos(photos)]
    detector.detect_prepared([decoded[0].canvas], [decoded[0].box])  # warm-up
    started = time.perf_counter()
    for d in decoded:
        detector.detect_prepared([d.canvas], [d.box])
    detector_ms = 1000 * (time.perf_counter() - started) / len(decoded)
    started = time.perf_counter()
    thumbs = [thumbnail(d.image) for d in decoded]
    thumbnail_ms = 1000 * (time.perf_counter() - started) / len(decoded)
    # One camera: the same view (the first photo) under camera noise, one photo in ten another view.
    rng = np.random.default_rng(0)
    grey = thumbs[0][0].astype(np.float32)
    camera = []
    for k in range(triggers):
        base = thumbs[k % len(thumbs)][0].astype(np.float32) if k % 10 == 0 else grey
        frame = np.clip(base * rng.uniform(0.9, 1.1) + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
        camera.append(Trigger(f"t{k}", 60.0 * k, True, (frame,), (f"t{k}",)))
    started = time.perf_counter()
    added = missed_boxes(camera, set())
    background_ms = 1000 * (time.perf_counter() - started) / triggers
    return {"photos": len(decoded), "triggers": triggers, "boxes_added": len(added), "detector_ms": detector_ms,
            "thumbnail_ms": thumbnail_ms, "background_ms": background_ms}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--triggers", type=int, default=2000)
    parser.add_argument("--photos", type=int, default=24)
    args = parser.parse_args(argv)
    r = run(args.triggers, args.photos)
    added = r["thumbnail_ms"] + r["background_ms"]
    print(f"detector (baseline, model alone, {r['photos']} photos): {r['detector_ms']:.1f} ms/image")
    print(f"thumbnail: {r['thumbnail_ms']:.2f} ms/image; camera comparison over {r['triggers']} triggers: "
          f"{r['background_ms']:.2f} ms/image ({r['boxes_added']} boxes)")
    print(f"background / detector: {added / r['detector_ms']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
