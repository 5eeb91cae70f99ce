"""The Stage 1 benchmark for MegaDetector v5's architecture (``make bench``; issue 12).

    .venv/bin/python -m bench.megadetector [--count 8] [--backend auto]

MegaDetector v5a/v5b (and v1000 redwood) are YOLOv5x6 at 1280 px. No weights can be downloaded
here, so this builds a randomly initialised YOLOv5x6 with MegaDetector's three classes and saves it
in the published file format (``bench.random_checkpoints``, which the tests use too); the model's cost is
the trained one's. It then runs ``bench.stage1`` (baseline, engine, limit in their own processes,
ratios measured in the same run) on it at 1280, with a reduced count so that it finishes in minutes
on a CPU, and prints the same ``engine/baseline=... engine/limit=...`` line.

The random head is scaled down so that boxes are few, as a trained model's are on camera-trap frames
(most are empty): NMS then costs what it costs in real use, not what thousands of junk boxes cost.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import stage1
from bench.random_checkpoints import build_yolov5, save_megadetector_checkpoint


def random_megadetector_v5(folder: Path) -> Path:
    """A random YOLOv5x6 MegaDetector checkpoint, built once and kept in ``folder``."""
    path = folder / "md_v5-architecture-random.pt"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        save_megadetector_checkpoint(build_yolov5("yolov5x6.yaml", objectness_boost=-4.0, head_scale=0.002), path)
    return path


def main(argv: list[str] | None = None) -> None:
    from gpu_ops.weights import default_model_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=8, help="images in the set (a CPU does about one a second)")
    parser.add_argument("--sets", default="4000x3000")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args(argv)
    checkpoint = random_megadetector_v5(default_model_dir().parent / "bench" / "megadetector")
    stage1.main([
        "--model", f"megadetector:{checkpoint}", "--image-size", "1280", "--backend", args.backend,
        "--count", str(args.count), "--sets", args.sets, "--batch-size", str(args.batch_size), "--no-full-crops",
    ])


if __name__ == "__main__":
    main()
