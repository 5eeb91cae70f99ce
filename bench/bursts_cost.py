"""What burst-aware detection costs per image, next to the detector, on this machine.

    .venv/bin/python -m bench.bursts_cost [--width 2048] [--frames 5] [--repeat 3]

Times, per image of a constructed burst at ``--width`` pixels (4:3): the default detector on the
whole frame; the motion model (grey reduction, alignment, background, regions); and the detector on
one verification crop. The three are timed interleaved, burst after burst, so that whatever else
runs on the machine weighs on all of them alike; the ratio is the figure to keep.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from bench.burst_scenes import make_burst
    from gpu_ops.detector_loader import load_detector
    from gpu_ops.motion import propose

    detector = load_detector("default", conf_threshold=0.1)
    size = (args.width * 3 // 4, args.width)
    bursts = [make_burst("moving", seed, size=size, n_frames=args.frames) for seed in range(args.repeat)]
    detect_ms, motion_ms, crop_ms = [], [], []
    for burst in bursts:
        started = time.perf_counter()
        detector.detect(burst.frames)
        detect_ms.append(1000 * (time.perf_counter() - started) / args.frames)
        started = time.perf_counter()
        propose(burst.frames)
        motion_ms.append(1000 * (time.perf_counter() - started) / args.frames)
        crop = np.ascontiguousarray(burst.frames[0][: size[0] // 4, : size[0] // 4])
        started = time.perf_counter()
        detector.detect([crop])
        crop_ms.append(1000 * (time.perf_counter() - started))
    d, m, c = (statistics.median(v) for v in (detect_ms, motion_ms, crop_ms))
    print(f"{size[1]}x{size[0]} frames, bursts of {args.frames}: detector {d:.1f} ms/image, motion {m:.1f} ms/image "
          f"({100 * m / d:.0f}% of the detector), one verification crop {c:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
