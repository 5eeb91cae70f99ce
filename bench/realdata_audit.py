"""Does the detector audit tell the truth on real frames? Its estimate against the recall the labels by eye give.

    python -m bench.realdata_audit [--part all|tune|holdout] [--model default|default-camtrap|default-camtrap-neck]
                                   [--sizes 10,20,40] [--draws 500]

The detector runs as the default pipeline runs it (animal-ness summed over the animal classes,
burst fusion) on the realdata frames of ``--part``; a frame is positive where it has an animal
box at or above 0.3. The labels by eye play the reviewer: a frame labelled ``animal:`` is a
review that saw an animal, ``empty`` or ``person`` one that saw none (``uncertain`` frames are left
out, as a reviewer who cannot tell would leave them blank). The frames are pooled as one camera
(each realdata folder holds too few for an audit of its own), with infrared and daylight apart as
the audit has them.

Printed: the true recall per lighting (animal frames boxed over animal frames); the audit with
every frame reviewed, which must equal it; and, for each review size, over ``--draws`` seeded
draws made as ``odins-ravne review sample`` makes them (half positives, half negatives, each
side across infrared and daylight), how
often the audit's 95 % interval holds the true recall (coverage; the interval is conservative, so
at least 0.95 is expected), the mean absolute error of its estimate, and how often the detector's
``status`` is ``misses_animals`` (the true recall is below the 0.9 target, so that is the right
answer), ``uncertain`` or ``ok`` (wrong). Nothing here is tuned; the audit has
no parameter but the target.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter, defaultdict

import pyarrow as pa

from bench.realdata import REALDATA, read_manifest, read_split
from bench.realdata_eval import run_methods
from gpu_ops import schemas
from gpu_ops.fusion import BurstConfig
from odins_ravne_assets.hugin.detector_audit import audit_detector, draw_review_sample

CAMERA = "realdata"
MIN_CONFIDENCE = 0.3
TARGET = 0.9


def detect(part: str, model: str) -> tuple[list, set[str]]:
    """The part's reviewable frames and the files the pipeline's detector boxes an animal on."""
    from gpu_ops.detector_loader import load_detector

    split = read_split()
    frames = [f for f in read_manifest(REALDATA) if f.kind != "uncertain" and (part == "all" or split.get(f.trigger) == part)]
    detector = load_detector(model, image_size=416, conf_threshold=0.1, animal_score="sum")
    fused = run_methods(frames, REALDATA, detector, bursts=BurstConfig(), seconds=defaultdict(float))["+bursts"]
    boxed = {file for file, found in fused.items()
             if any(d.category == "animal" and d.conf >= MIN_CONFIDENCE for d in found)}
    return frames, boxed


def tables(frames, boxed: set[str]) -> tuple[pa.Table, pa.Table]:
    media = pa.Table.from_pylist([{"camera_id": CAMERA, "file_path": f.file, "sha256": f.file, "status": "ok",
                                   "media_type": "image"} for f in frames], schema=schemas.MEDIA)
    detections = pa.Table.from_pylist([{"camera_id": CAMERA, "detection_id": f.file, "file_path": f.file, "category": "animal",
                                        "conf": 0.9} for f in frames if f.file in boxed], schema=schemas.DETECTIONS)
    return media, detections


def reviews_of(frames) -> pa.Table:
    return pa.Table.from_pylist([{"camera_id": CAMERA, "file_path": f.file, "detection_id": None,
                                  "observation_type": "animal" if f.kind == "animal" else "blank", "source": "manifest"}
                                 for f in frames], schema=schemas.REVIEWS)


def audit(frames, boxed, reviewed) -> dict[str, dict]:
    media, detections = tables(frames, boxed)
    rows = audit_detector(media, detections, reviews_of(reviewed), camera_id=CAMERA, min_confidence=MIN_CONFIDENCE,
                          target_recall=TARGET, infrared={f.file: f.infrared for f in frames})
    return {r["lighting"]: r for r in rows.to_pylist()}


def true_recall(frames, boxed) -> dict[str, float | None]:
    out = {}
    for lighting in ("infrared", "daylight", "all"):
        animals = [f for f in frames if f.kind == "animal" and (lighting == "all" or f.infrared == (lighting == "infrared"))]
        out[lighting] = sum(f.file in boxed for f in animals) / len(animals) if animals else None
    return out


def sample(frames, boxed, size: int, rng: random.Random) -> list:
    """The frames ``odins-ravne review sample`` would draw (:func:`draw_review_sample`)."""
    by_file = {f.file: f for f in frames}
    media = [{"file_path": f.file, "sha256": f.file} for f in frames]
    picked = draw_review_sample(media, boxed, {f.file: f.infrared for f in frames}, size, rng)
    return [by_file[m["file_path"]] for m, _ in picked]


def run(part: str, model: str, sizes: list[int], draws: int) -> dict:
    frames, boxed = detect(part, model)
    truth = true_recall(frames, boxed)
    full = audit(frames, boxed, frames)
    by_size = {}
    for size in sizes:
        rng = random.Random(size)
        covered, errors, statuses, estimated = Counter(), defaultdict(list), Counter(), Counter()
        for _ in range(draws):
            rows = audit(frames, boxed, sample(frames, boxed, size, rng))
            statuses[rows["all"]["status"]] += 1
            for lighting, row in rows.items():
                if row["recall"] is None or truth[lighting] is None:
                    continue
                estimated[lighting] += 1
                covered[lighting] += row["recall_low"] - 1e-9 <= truth[lighting] <= row["recall_high"] + 1e-9  # exact when all reviewed
                errors[lighting].append(abs(row["recall"] - truth[lighting]))
        by_size[size] = {
            "status_all": {k: v / draws for k, v in sorted(statuses.items())},
            **{lighting: {"estimated": estimated[lighting] / draws,
                          "coverage": covered[lighting] / estimated[lighting] if estimated[lighting] else None,
                          "mean_abs_error": sum(errors[lighting]) / len(errors[lighting]) if errors[lighting] else None}
               for lighting in ("infrared", "daylight", "all")},
        }
    counts = Counter((("infrared" if f.infrared else "daylight"), f.kind, f.file in boxed) for f in frames)
    return {"part": part, "model": model, "frames": len(frames), "draws": draws, "true_recall": truth,
            "full_review": {k: {"recall": r["recall"], "low": r["recall_low"], "high": r["recall_high"], "status": r["status"]}
                            for k, r in full.items()},
            "counts": {f"{light} {kind} {'boxed' if b else 'unboxed'}": n for (light, kind, b), n in sorted(counts.items())},
            "sampled": by_size}


def format_report(report: dict) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [f"detector audit on realdata ({report['part']}, {report['frames']} frames, model {report['model']})",
             "frames: " + ", ".join(f"{k} {n}" for k, n in report["counts"].items()),
             "true recall (labels by eye): " + ", ".join(f"{k} {fmt(v)}" for k, v in report["true_recall"].items()),
             "audit, every frame reviewed: " + ", ".join(
                 f"{k} {fmt(r['recall'])} ({fmt(r['low'])}-{fmt(r['high'])}) {r['status']}" for k, r in report["full_review"].items()),
             f"sampled reviews ({report['draws']} draws each): size | coverage all / infrared / daylight | "
             "mean abs error all / infrared / daylight | status of all"]
    for size, s in report["sampled"].items():
        lines.append(f"  {size:>3} | " + " / ".join(fmt(s[k]["coverage"]) for k in ("all", "infrared", "daylight"))
                     + " | " + " / ".join(fmt(s[k]["mean_abs_error"]) for k in ("all", "infrared", "daylight"))
                     + " | " + ", ".join(f"{k} {v:.2f}" for k, v in s["status_all"].items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", "tune", "holdout"), default="all")
    parser.add_argument("--model", default="default")
    parser.add_argument("--sizes", default="10,20,40", help="reviewed media per draw, comma-separated")
    parser.add_argument("--draws", type=int, default=500)
    args = parser.parse_args(argv)
    print(format_report(run(args.part, args.model, [int(s) for s in args.sizes.split(",")], args.draws)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
