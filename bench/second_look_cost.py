"""What the infrared second look (:mod:`gpu_ops.second_look`) costs per image, next to the detector:

    python -m bench.second_look_cost [--photos 48] [--model default-camtrap]

The baseline, measured in the same run: the detector (416 px, the model alone, one image at a time)
on the canvases the engine makes of ``--photos`` real camera-trap photographs (``../shared/realdata``,
or ultralytics' bundled photographs where it is missing). Then the second look as Stage 1 runs it on
the same canvases and first looks: the contrast stretch alone, its worst case (every image an
infrared frame with no box, so every one is stretched and detected again) and what it cost on these
photos, with how many of them it looked at again. Prints ms per image and ratios to the detector.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.background_cost import _photos
from gpu_ops import second_look
from gpu_ops.engine import decode_for_detection


def _per_image_ms(work, items) -> float:
    started = time.perf_counter()
    for item in items:
        work(item)
    return 1000 * (time.perf_counter() - started) / max(len(items), 1)


def run(photos: int, model: str) -> dict:
    from gpu_ops.detector_loader import load_detector

    detector = load_detector(model, image_size=416, conf_threshold=0.1, animal_score="sum")
    decoded = [decode_for_detection(path, detector) for path in _photos(photos)]
    detector.detect_prepared([decoded[0].canvas], [decoded[0].box])  # warm-up
    first = {}
    detector_ms = _per_image_ms(lambda d: first.__setitem__(id(d), detector.detect_prepared([d.canvas], [d.box])[0]), decoded)
    stretch_ms = _per_image_ms(lambda d: second_look.stretched(d.canvas), decoded)
    # The worst case: every image looked at again (BELOW above any confidence, grey canvases).
    grey = [(np.repeat(d.canvas.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2), d.box) for d in decoded]
    worst_ms = _per_image_ms(lambda g: second_look.look_again(detector, [g[0]], [g[1]], [[]], 1.1), grey)
    looked = []
    actual_ms = _per_image_ms(lambda d: looked.append(second_look.look_again(detector, [d.canvas], [d.box], [first[id(d)]],
                                                                               second_look.BELOW)[1]), decoded)
    return {"photos": len(decoded), "model": model, "detector_ms": detector_ms, "stretch_ms": stretch_ms,
            "worst_ms": worst_ms, "actual_ms": actual_ms, "looked_again": sum(looked)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--model", default=second_look.AUTO_MODEL)
    args = parser.parse_args(argv)
    r = run(args.photos, args.model)
    d = r["detector_ms"]
    print(f"detector (baseline, {r['model']}, model alone, {r['photos']} photos): {d:.1f} ms/image")
    print(f"contrast stretch alone: {r['stretch_ms']:.2f} ms/image ({r['stretch_ms'] / d:.2f} x the detector)")
    print(f"second look, worst case (every image infrared and empty): {r['worst_ms']:.1f} ms/image ({r['worst_ms'] / d:.2f} x)")
    print(f"second look on these photos ({r['looked_again']} of {r['photos']} looked at again): "
          f"{r['actual_ms']:.1f} ms/image ({r['actual_ms'] / d:.2f} x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
