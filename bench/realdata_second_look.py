"""Second looks at a frame, measured on realdata (README, "Detection on real frames"):

    python -m bench.realdata_second_look [--part tune] [--model default] [--cv]

Each variant runs the detector once more on a frame on which its first look (416 px, animal-ness
summed) found nothing at the events threshold, and adds the new boxes that no box of the same
category already covers (IoU > 0.45):

- ``scale N``: the frame at another input size (256 and 320 see a frame-filling animal the way the
  model's anchors were trained for; 608 a small one larger); not kept;
- ``flip``: the frame mirrored; not kept;
- ``contrast``: :mod:`gpu_ops.second_look` as Stage 1 runs it, on infrared frames only (judged on the
  pixels, not the manifest), with CLAHE clip 2 and with the clip kept.

Detector alone (no bursts, no background), so each variant's own effect shows. Decided on the tune
part with the COCO weights, which never saw it, and with ``--cv``: heads fine-tuned as
``default-camtrap`` is (its recipe, on one fold of the tune part) and scored on the other fold, both
ways, pooled (the shipped fine-tunes were trained on the whole tune part, so their figures there
flatter them). The held-out part was not scored for any of these. Prints animal frames boxed, on the animal, box recall,
precision, empty frames boxed, and each look's milliseconds per frame next to the first look's.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np

from bench.realdata import REALDATA, read_manifest, read_split
from bench.realdata_eval import DETECT_SIDE, SLICES, _Score
from gpu_ops import media as media_io
from gpu_ops import second_look
from gpu_ops.detector import Detection
from gpu_ops.detector_loader import load_detector
from gpu_ops.second_look import merged

FIRST_SIZE = 416
MIN_CONFIDENCE = 0.3


def _mirrored(detections: list[Detection]) -> list[Detection]:
    return [Detection(d.category, d.label, d.conf, (1.0 - d.bbox[0] - d.bbox[2], *d.bbox[1:])) for d in detections]


def _unless_found(first: list[Detection], look) -> list[Detection]:
    return first if any(d.conf >= MIN_CONFIDENCE for d in first) else merged(first, look())


def _looks(detector: dict) -> dict:
    """name -> (image, first look) -> boxes (module doc); the scales only where ``detector`` has them."""
    base = detector[FIRST_SIZE]

    def contrast(image, first, clip):  # what Stage 1 runs: gpu_ops.second_look on the first look's canvas
        canvas, box = base.prepare(image)
        return second_look.look_again(base, [canvas], [box], [first], MIN_CONFIDENCE, clip)[0][0]

    looks = {f"scale {size}": (lambda image, first, d=detector[size]: _unless_found(first, lambda: d.detect([image])[0]))
             for size in (256, 320, 608) if size in detector}
    return looks | {
        "flip": lambda image, first: _unless_found(first, lambda: _mirrored(base.detect([np.ascontiguousarray(image[:, ::-1])])[0])),
        "contrast, clip 2": lambda image, first: contrast(image, first, 2.0),
        f"contrast, clip {second_look.CLIP:g} (kept)": lambda image, first: contrast(image, first, second_look.CLIP),
    }


def _score(frames, detector: dict, scores: dict, seconds: dict) -> None:
    """Each look's boxes on ``frames``, added to ``scores`` (look -> slice -> _Score) and ``seconds``."""
    looks = _looks(detector)
    for f in frames:
        image = media_io.load_image(REALDATA / f.file, max_side=DETECT_SIDE)
        started = time.perf_counter()
        first = detector[FIRST_SIZE].detect([image])[0]
        seconds["first look"] += time.perf_counter() - started
        found = {"first look": first}
        for name, look in looks.items():
            started = time.perf_counter()
            found[name] = look(image, first)
            seconds[name] += time.perf_counter() - started
        for name, boxes in found.items():
            slices = scores.setdefault(name, {s: _Score() for s in SLICES})
            for s in ("all", "infrared" if f.infrared else "daylight"):
                slices[s].add(f, boxes, MIN_CONFIDENCE)


def run(part: str = "tune", model: str = "default") -> tuple[dict, dict]:
    """(look -> slice -> summary, look -> ms per frame) on one part with a shipped model."""
    split = read_split()
    frames = [f for f in read_manifest(REALDATA) if split.get(f.trigger) == part and f.kind != "uncertain"]
    detector = {size: load_detector(model, image_size=size, conf_threshold=0.1, animal_score="sum")
                for size in (FIRST_SIZE, 256, 320, 608)}
    scores, seconds = {}, defaultdict(float)
    _score(frames, detector, scores, seconds)
    return _summaries(scores), {name: 1000 * v / max(len(frames), 1) for name, v in seconds.items()}


def cross_validated(config) -> tuple[dict, dict]:
    """``--cv``: the looks with heads fine-tuned (``config``) on one fold of the tune part and scored on
    the other (bench.realdata_finetune's folds), pooled; 416 px looks only."""
    from bench.realdata_finetune import _train, folds, training_samples

    split = folds(read_split())
    scores, seconds, count = {}, defaultdict(float), 0
    for k in (0, 1):
        tuned, _ = _train(training_samples(f"fold{1 - k}", split), config)
        frames = [f for f in read_manifest(REALDATA) if split.get(f.trigger) == f"fold{k}" and f.kind != "uncertain"]
        _score(frames, {FIRST_SIZE: tuned}, scores, seconds)
        count += len(frames)
    return _summaries(scores), {name: 1000 * v / max(count, 1) for name, v in seconds.items()}


def _summaries(scores: dict) -> dict:
    return {name: {s: sc.summary() for s, sc in slices.items()} for name, slices in scores.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", default="tune", choices=("tune", "holdout"))
    parser.add_argument("--model", default="default")
    parser.add_argument("--cv", action="store_true", help="heads fine-tuned on one fold of the tune part, scored on the other")
    args = parser.parse_args(argv)
    if args.cv:
        from gpu_ops.finetune import FineTuneConfig

        config = FineTuneConfig(negative_weight=4.0)  # default-camtrap's recipe (gpu_ops.weights.FINE_TUNED)
        scores, ms = cross_validated(config)
        print(f"[tune, two folds] heads fine-tuned on the other fold ({config}), boxes at conf >= {MIN_CONFIDENCE}")
    else:
        scores, ms = run(args.part, args.model)
        print(f"[{args.part}] {args.model}, detector alone, boxes at conf >= {MIN_CONFIDENCE}")
    for name, slices in scores.items():
        a, ir = slices["all"], slices["infrared"]
        print(f"{name:<20} boxed {a['animal_frames_boxed']}/{a['animal_frames']} (infrared {ir['animal_frames_boxed']}/"
              f"{ir['animal_frames']})  on the animal {a['animal_frames_located']}  box recall {a['box_recall']:.2f}  "
              f"precision {a['precision']:.2f}  empty frames boxed {a['boxes_on_empty']}/{a['empty_frames']}  "
              f"{ms[name]:.1f} ms/frame ({ms[name] / ms['first look']:.2f} x the first look)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
