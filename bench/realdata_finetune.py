"""The training recipe for a camera-trap default (issue 13, direction 4), measured on realdata:

    python -m bench.realdata_finetune [--epochs 10] [--lr 5e-4] [--l2 1.0] [--negative-weight W] [--seed 0]
                                      [--composites N] [--sheet composites.png] [--cv] [--out heads.bin]

Fine-tunes the default YOLOv3-tiny's two head convolutions (:mod:`gpu_ops.finetune`) on the frames
of the realdata tune part (boxes by eye; empty frames as negatives), each also mirrored, and on
``--composites`` more made from them (:mod:`gpu_ops.composites`: real animal cut-outs, Tux Paint's
photo stamps, pasted on the tune frames as their cameras would have taken them), then scores
the COCO heads and the fine-tuned ones on the tune and the held-out parts, with animal-ness summed
(``animal_score: sum``) and burst fusion as Stage 1 runs them. Without ``--negative-weight`` it trains
with each of ``NEGATIVE_WEIGHTS`` in turn and keeps the first that puts no box on the tune part's
empty frames (with bursts), judged on the tune part alone. ``--train-from 13`` trains the neck as
well as the heads. ``--out`` writes the trained state; the shipped ones are this command's output
with the arguments in :data:`gpu_ops.weights.FINE_TUNED`. Seeded and on the CPU: a run gives the
same weights each time. It takes one to two minutes here for the heads, six for the neck on 400
composites.

``--cv`` scores a recipe without looking at the held-out part at all: the tune part's triggers are
cut in two folds (by the sha256 of the trigger), each fold's model is trained on the other fold
alone (its frames and composites made from them) and scored on it, and the two folds' figures are
pooled (animal frames boxed, located, boxes on empty frames), next to the COCO heads' on the same
frames. This is how a recipe is chosen; the held-out part is scored once, for the one kept.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.realdata import REALDATA, read_manifest, read_split
from bench.realdata_eval import DETECT_SIDE, evaluate_realdata, format_realdata
from gpu_ops import media as media_io
from gpu_ops.composites import composite
from gpu_ops.detector_darknet import DarknetDetector
from gpu_ops.finetune import FineTuneConfig, Sample, fine_tune_heads, save_heads
from gpu_ops.weights import fetch_default_weights
from odins_ravne_assets.munin.preview import sheet_png
from odins_ravne_assets.sample_data.sources import CUTOUTS, fetch_sources


def _detector() -> DarknetDetector:
    return DarknetDetector(fetch_default_weights(), backend="torch", device="cpu", image_size=416,
                           conf_threshold=0.1, iou_threshold=0.45, animal_score="sum")


def training_samples(part: str = "tune", split: dict[str, str] | None = None) -> list[Sample]:
    """The part's animal and person frames with boxes, and its empty frames."""
    split = split if split is not None else read_split()
    samples = []
    for f in read_manifest(REALDATA):
        if split.get(f.trigger) != part or f.kind not in ("animal", "person", "empty") or (f.kind != "empty" and not f.boxes):
            continue
        image = media_io.load_image(REALDATA / f.file, max_side=DETECT_SIDE)
        samples.append(Sample(image, f.boxes, (f.kind,) * len(f.boxes)))
    return samples


def load_cutouts() -> list[np.ndarray]:
    """The real animal cut-outs (RGBA), fetched once from their pinned Debian package."""
    folder = fetch_sources(archives=(CUTOUTS,)) / CUTOUTS.name
    return [np.asarray(Image.open(folder / name).convert("RGBA")) for name in sorted(CUTOUTS.members)]


def with_composites(samples: list[Sample], count: int, seed: int, cutouts: list[np.ndarray] | None = None) -> list[Sample]:
    """``samples`` and ``count`` composites made on them in turn (each frame a background, its own
    boxes kept), seeded."""
    if count <= 0 or not samples:
        return list(samples)
    cutouts = cutouts if cutouts is not None else load_cutouts()
    rng = np.random.default_rng(seed)
    return list(samples) + [composite(samples[i % len(samples)], cutouts, rng) for i in range(count)]


def contact_sheet(samples: list[Sample], path, columns: int = 4, width: int = 400) -> Path:
    """A PNG of ``samples`` (the first composites, say) with their boxes by eye drawn, laid out as the
    UI's contact sheet (:func:`odins_ravne_assets.munin.preview.sheet_png`), to look at what the
    detector is taught; ``width`` is a tile's width in a full row."""
    photos = [(f"sample {i}", [{"category": kind, "label": kind, "conf": None,
                                "bbox_x": x, "bbox_y": y, "bbox_w": w, "bbox_h": h}
                               for (x, y, w, h), kind in zip(sample.boxes, sample.kinds)],
               Image.fromarray(sample.image)) for i, sample in enumerate(samples)]
    path = Path(path)
    path.write_bytes(sheet_png(photos, tile_side=width, columns=columns))
    return path


def folds(split: dict[str, str], part: str = "tune") -> dict[str, str]:
    """The split with ``part``'s triggers cut in ``fold0`` and ``fold1`` by their sha256."""
    return {t: (f"fold{hashlib.sha256(t.encode()).digest()[0] % 2}" if p == part else p) for t, p in split.items()}


NEGATIVE_WEIGHTS = (1.0, 2.0, 4.0, 8.0)  # tried in order when --negative-weight is not given


def _train(samples: list[Sample], config: FineTuneConfig) -> tuple[DarknetDetector, dict]:
    tuned = _detector()
    started = time.perf_counter()
    state = fine_tune_heads(tuned, samples, config, progress=lambda e, loss: print(f"  epoch {e + 1}/{config.epochs}: loss {loss:.3f}", flush=True))
    print(f"trained in {time.perf_counter() - started:.0f} s")
    return tuned, state


def cross_validate(config: FineTuneConfig, composites: int, cutouts: list[np.ndarray] | None = None) -> dict:
    """``--cv`` (module doc): the pooled two-fold figures of the COCO heads and of ``config``'s."""
    split = folds(read_split())
    pooled: dict[str, dict[str, int]] = {}
    for k in (0, 1):
        train = with_composites(training_samples(f"fold{1 - k}", split), composites, config.seed, cutouts)
        print(f"fold {k}: training on the other fold's {len(train)} frames ({composites} composites)", flush=True)
        tuned, _ = _train(train, config)
        report = evaluate_realdata(REALDATA, {"": _detector(), "+tuned": tuned}, parts=(f"fold{k}",), split=split)
        for name, slices in report["results"][f"fold{k}"].items():
            for slice_name, r in slices.items():
                into = pooled.setdefault(f"{name} {slice_name}", {"animal_frames": 0, "boxed": 0, "located": 0, "boxes_on_empty": 0})
                into["animal_frames"] += r["animal_frames"]
                into["boxed"] += r["animal_frames_boxed"]
                into["located"] += r["animal_frames_located"]
                into["boxes_on_empty"] += r["boxes_on_empty"]
    return pooled


def format_cv(pooled: dict) -> str:
    lines = ["two-fold cross-validation within the tune part (pooled): animal frames boxed, located, boxes on empty frames"]
    for name, r in pooled.items():
        n = r["animal_frames"]
        if n:
            lines.append(f"  {name:32s} boxed {r['boxed']}/{n} ({r['boxed'] / n:.2f})  located {r['located']}/{n} "
                         f"({r['located'] / n:.2f})  boxes on empty {r['boxes_on_empty']}")
    return "\n".join(lines)


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
    parser.add_argument("--train-from", type=int, help="train every layer from this one on (13: the neck), not the heads alone")
    parser.add_argument("--composites", type=int, default=0, help="composites made from the training frames")
    parser.add_argument("--sheet", help="write a picture of the first 16 composites with their boxes here (.png)")
    parser.add_argument("--cv", action="store_true", help="two-fold cross-validation within the tune part, nothing else")
    parser.add_argument("--out", help="write the fine-tuned heads' state here")
    args = parser.parse_args(argv)
    if args.cv:
        weight = args.negative_weight if args.negative_weight is not None else defaults.negative_weight
        config = FineTuneConfig(epochs=args.epochs, lr=args.lr, l2=args.l2, negative_weight=weight, seed=args.seed,
                                train_from=args.train_from)
        print(config)
        print(format_cv(cross_validate(config, args.composites)))
        return 0
    real = training_samples()
    samples = with_composites(real, args.composites, args.seed)
    if args.sheet and args.composites:
        print("composites drawn in", contact_sheet(samples[len(real):len(real) + 16], args.sheet))
    print(f"training on {len(samples)} frames ({sum(bool(s.boxes) for s in samples)} with boxes; {args.composites} of them composites), each mirrored")
    for weight in [args.negative_weight] if args.negative_weight is not None else NEGATIVE_WEIGHTS:
        config = FineTuneConfig(epochs=args.epochs, lr=args.lr, l2=args.l2, negative_weight=weight, seed=args.seed,
                                train_from=args.train_from)
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
