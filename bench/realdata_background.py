"""The camera-level background (:mod:`gpu_ops.background`) as a Stage 1 proposal source, measured on
the realdata split against the detector with animal-ness and burst fusion:

    python -m bench.realdata_background [--part tune|holdout] [--frames]

Every trigger of a camera is reduced once; each trigger's background is the median of the other
triggers of its camera and illumination mode; proposals that recur in other triggers are dropped,
the rest verified by the detector on crops (gpu_ops.fusion's verification), and a verified box that
no detector box already covers is added (``source = background``); one the crop does not confirm is
added at ``--prior-conf`` (0 keeps verified ones only). Figures: :mod:`gpu_ops.background`.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

from bench.realdata import REALDATA, read_manifest, read_split
from bench.realdata_eval import DETECT_SIDE, SLICES, _Score
from gpu_ops import media as media_io
from gpu_ops.background import BackgroundConfig, is_infrared, propose, reduce
from gpu_ops.boxes import iou
from gpu_ops.fusion import BurstConfig, FusedDetection, _verify, fuse_burst


def run(part: str, config: BackgroundConfig, min_confidence: float = 0.3) -> dict:
    from gpu_ops.detector_loader import load_detector

    detector = load_detector("default", image_size=416, conf_threshold=0.1, animal_score="sum")
    split = read_split()
    frames = read_manifest(REALDATA)
    by_trigger = defaultdict(list)
    for f in frames:
        by_trigger[f.trigger].append(f)
    seconds = defaultdict(float)
    images, fused, reduced, mode = {}, {}, {}, {}
    for trigger, members in by_trigger.items():  # every trigger: the background needs the other part's too
        imgs = [media_io.load_image(REALDATA / f.file, max_side=DETECT_SIDE) for f in members]
        started = time.perf_counter()
        reduced[trigger] = reduce(imgs, config.side)
        mode[trigger] = (members[0].camera, is_infrared(imgs[0]))
        seconds["background_reduce"] += time.perf_counter() - started
        if split.get(trigger) != part:
            continue
        images[trigger] = imgs
        started = time.perf_counter()
        dets = detector.detect(imgs)
        seconds["detector"] += time.perf_counter() - started
        fused[trigger] = fuse_burst(imgs, dets, detector, config=BurstConfig()).detections

    # Proposals of every trigger of the part, against the other triggers of its camera and mode.
    started = time.perf_counter()
    proposals = {}
    for trigger in by_trigger:
        others = [reduced[t] for t in by_trigger if t != trigger and mode[t] == mode[trigger]]
        if len(others) < config.min_triggers:
            proposals[trigger] = []
            continue
        import numpy as np
        shape = min(o.shape for o in others + [reduced[trigger]])
        background = np.median(np.stack([o[: shape[0], : shape[1]] for o in others]), axis=0)
        diff = reduced[trigger][: shape[0], : shape[1]] - background
        if float(np.median(np.abs(diff))) > config.max_noise:  # another scene (the camera moved, or a mixed folder)
            proposals[trigger] = []
            continue
        proposals[trigger] = propose(reduced[trigger], background, config)
    kept = {}
    for trigger, props in proposals.items():
        if split.get(trigger) != part:
            continue
        same = [t for t in by_trigger if t != trigger and mode[t] == mode[trigger]]
        kept[trigger] = [p for p in props
                         if sum(any(iou(p.bbox, q.bbox) >= config.repeat_iou for q in proposals[t]) for t in same)
                         < config.repeat_triggers]
    seconds["background_propose"] += time.perf_counter() - started

    out = {"+animal_sum+bursts": {}, "+animal_sum+bursts+background": {}}
    counts = defaultdict(int)
    per_frame = {}  # file -> its boxes at min_confidence, and what the background adds (--frames)
    for trigger, imgs in images.items():
        for k, f in enumerate(by_trigger[trigger]):
            base = fused[trigger][k]
            out["+animal_sum+bursts"][f.file] = base
            props = [p for p in kept[trigger]
                     if not any(iou(p.bbox, d.bbox) >= 0.3 and d.conf >= min_confidence for d in base)]
            counts["proposals"] += len(proposals[trigger])
            counts["after_repeats"] += len(kept[trigger])
            extra = []
            if props:
                started = time.perf_counter()
                verified, n = _verify([imgs[k]], props, [[p] for p in props], {id(p): i for i, p in enumerate(props)},
                                      detector, BurstConfig())
                seconds["background_verify"] += time.perf_counter() - started
                counts["crops"] += n
                for p in props:
                    hit = verified.get(id(p))
                    if hit is None and config.prior_conf > 0:
                        hit = ("animal", "background", config.prior_conf, p.bbox)
                    if hit and not any(iou(hit[3], d.bbox) >= 0.5 for d in base + extra):
                        extra.append(FusedDetection(hit[0], hit[1], hit[2], hit[3], "background"))
            counts["added"] += len(extra)
            out["+animal_sum+bursts+background"][f.file] = base + extra
            shown = lambda found: [(d.category, round(d.conf, 2), d.source) for d in found if d.conf >= min_confidence]  # noqa: E731
            per_frame[f.file] = {"kind": f.kind, "infrared": f.infrared, "boxes": shown(base), "background_adds": shown(extra)}
    results = {}
    for method, by_file in out.items():
        scores = {s: _Score() for s in SLICES}
        for trigger in images:
            for f in by_trigger[trigger]:
                for s in ("all", "infrared" if f.infrared else "daylight"):
                    scores[s].add(f, by_file[f.file], min_confidence)
        results[method] = {s: sc.summary() for s, sc in scores.items()}
    n = sum(len(by_trigger[t]) for t in images)
    return {"part": part, "frames": n, "results": results, "counts": dict(counts), "per_frame": per_frame,
            "ms_per_image": {k: round(1000 * v / max(n, 1), 1) for k, v in seconds.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("tune", "holdout"), default="tune")
    parser.add_argument("--prior-conf", type=float, default=BackgroundConfig.prior_conf,
                        help="confidence of an unverified background proposal (0: verified ones only)")
    parser.add_argument("--frames", action="store_true", help="also print each frame's boxes, without and with the background")
    args = parser.parse_args(argv)
    report = run(args.part, BackgroundConfig(prior_conf=args.prior_conf))
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for method, slices in report["results"].items():
        print(f"[{report['part']}] {method:<32}" + "".join(
            f" | {s}: {fmt(r['image_recall'])} ({r['animal_frames']}) {fmt(r['box_recall'])} {fmt(r['precision'])} "
            f"{r['boxes_on_empty']}/{r['empty_frames']}" for s, r in slices.items()))
    print("counts:", report["counts"], "ms per image:", report["ms_per_image"])
    if args.frames:
        for file, frame in report["per_frame"].items():
            print(f"  {file} {frame['kind']} {'infrared' if frame['infrared'] else 'daylight'} | "
                  f"boxes: {frame['boxes']} | background adds: {frame['background_adds']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
