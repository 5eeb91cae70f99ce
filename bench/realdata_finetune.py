"""The training recipe for a camera-trap default (issue 13, direction 4), measured on realdata:

    python -m bench.realdata_finetune [--epochs 10] [--lr 5e-4] [--l2 1.0] [--negative-weight W] [--seed 0] [--out heads.bin]

Fine-tunes the default YOLOv3-tiny's two head convolutions (:mod:`gpu_ops.finetune`) on the frames
of the realdata tune part (boxes by eye; empty frames as negatives), each also mirrored, then scores
the COCO heads and the fine-tuned ones on the tune and the held-out parts, with animal-ness summed
(``animal_score: sum``) and burst fusion as Stage 1 runs them. Without ``--negative-weight`` it trains
with each of ``NEGATIVE_WEIGHTS`` in turn and keeps the first that puts no box on the tune part's
empty frames (with bursts), judged on the tune part alone. ``--out`` writes the heads' state (the
shipped ``gpu_ops/models/yolov3-tiny-camtrap-heads.bin`` is this command's output with the defaults).
Seeded and on the CPU: a run gives the same weights each time. It takes one to two minutes here.
"""

from __future__ import annotations

import argparse
import time

from bench.realdata import REALDATA, read_manifest, read_split
from bench.realdata_eval import DETECT_SIDE, evaluate_realdata, format_realdata
from gpu_ops import media as media_io
from gpu_ops.detector_darknet import DarknetDetector
from gpu_ops.finetune import FineTuneConfig, Sample, fine_tune_heads, save_heads
from gpu_ops.weights import fetch_default_weights


def _detector() -> DarknetDetector:
    return DarknetDetector(fetch_default_weights(), backend="torch", device="cpu", image_size=416,
                           conf_threshold=0.1, iou_threshold=0.45, animal_score="sum")


def training_samples(part: str = "tune") -> list[Sample]:
    """The part's animal and person frames with boxes, and its empty frames."""
    split = read_split()
    samples = []
    for f in read_manifest(REALDATA):
        if split.get(f.trigger) != part or f.kind not in ("animal", "person", "empty") or (f.kind != "empty" and not f.boxes):
            continue
        image = media_io.load_image(REALDATA / f.file, max_side=DETECT_SIDE)
        samples.append(Sample(image, f.boxes, (f.kind,) * len(f.boxes)))
    return samples


NEGATIVE_WEIGHTS = (1.0, 2.0, 4.0, 8.0)  # tried in order when --negative-weight is not given


def _train(samples: list[Sample], config: FineTuneConfig) -> tuple[DarknetDetector, dict]:
    tuned = _detector()
    started = time.perf_counter()
    state = fine_tune_heads(tuned, samples, config, progress=lambda e, loss: print(f"  epoch {e + 1}/{config.epochs}: loss {loss:.3f}", flush=True))
    print(f"trained in {time.perf_counter() - started:.0f} s")
    return tuned, state


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = FineTuneConfig()
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--l2", type=float, default=defaults.l2, help="pull towards the COCO weights")
    parser.add_argument("--negative-weight", type=float,
                        help="objectness loss of a cell with no box (a box's is 5); not given: the lowest of "
                             f"{', '.join(f'{w:g}' for w in NEGATIVE_WEIGHTS)} that leaves the tune part's empty frames without a box")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--out", help="write the fine-tuned heads' state here")
    args = parser.parse_args(argv)
    samples = training_samples()
    print(f"training on {len(samples)} tune frames ({sum(bool(s.boxes) for s in samples)} with boxes), each mirrored")
    for weight in [args.negative_weight] if args.negative_weight is not None else NEGATIVE_WEIGHTS:
        config = FineTuneConfig(epochs=args.epochs, lr=args.lr, l2=args.l2, negative_weight=weight, seed=args.seed)
        print(config)
        tuned, state = _train(samples, config)
        if args.negative_weight is not None:
            break
        # The choice looks at the tune part only: the held-out part is scored once, for the one kept.
        tune = evaluate_realdata(REALDATA, {"": tuned}, parts=("tune",))["results"]["tune"]["+bursts"]["all"]
        print(f"  tune, with bursts: {tune['image_recall']:.2f} of animal frames boxed, {tune['boxes_on_empty']} boxes on empty frames")
        if tune["boxes_on_empty"] == 0:
            break
    else:
        print("every weight tried boxes an empty tune frame: keeping the last")
    if args.out:
        print("heads written to", save_heads(state, args.out))
    report = evaluate_realdata(REALDATA, {"+animal_sum": _detector(), "+animal_sum+finetuned": tuned}, parts=("tune", "holdout"))
    print(format_realdata(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
