"""The camera-level background (:mod:`gpu_ops.background`) as Stage 1 and the ``detections`` asset
run it, measured on the realdata split against the detector with animal-ness and burst fusion:

    python -m bench.realdata_background [--part tune|holdout] [--model default|default-camtrap|default-camtrap-neck] [--frames]

Each image's thumbnail is cut from the decode the engine makes for the detector
(``gpu_ops.engine.decode_for_detection``), each camera's triggers are timed by the EXIF time the
ingest reads, and :func:`gpu_ops.background.missed_boxes` adds its one box to every image the
detector (with bursts) left without a box at or above ``--min-confidence``: the same functions, on
the same inputs, as ``odins_ravne_assets.munin.publish.background_detections``. Each is scored
without and with the infrared second look (:mod:`gpu_ops.second_look`, ``+second_look``, as Stage 1
runs it before burst fusion), whichever ``pipeline.stage1.infrared_second_look`` would choose;
``--frames`` shows the frames with it. Every trigger of a
camera is context, the tune and held-out ones alike (detected as every image of a camera is; no
labels are used for it); the scores are of ``--part`` alone. Figures: :mod:`gpu_ops.background` and the README.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

from bench.realdata import REALDATA, read_manifest, read_split
from bench.realdata_eval import DETECT_SIDE, SLICES, _Score
from gpu_ops import media as media_io
from gpu_ops import second_look
from gpu_ops.background import BackgroundConfig, Trigger, missed_boxes, thumbnail
from gpu_ops.engine import decode_for_detection
from gpu_ops.fusion import BurstConfig, FusedDetection, fuse_burst

BASE, WITH_BACKGROUND = "+animal_sum+bursts", "+animal_sum+bursts+background"
SECOND_LOOK = "+second_look"  # gpu_ops.second_look before bursts: BASE and WITH_BACKGROUND again, each with it


def run(part: str, config: BackgroundConfig, min_confidence: float = 0.3, model: str = "default") -> dict:
    from gpu_ops.detector_loader import load_detector

    detector = load_detector(model, image_size=416, conf_threshold=0.1, animal_score="sum")
    split = read_split()
    frames = read_manifest(REALDATA)
    by_trigger = defaultdict(list)
    for f in frames:
        by_trigger[f.trigger].append(f)
    seconds = defaultdict(float)
    fused, thumbs, times = {False: {}, True: {}}, {}, {}
    for trigger, members in by_trigger.items():  # every trigger: the background needs the part's neighbours too
        for f in members:
            decoded = decode_for_detection(REALDATA / f.file, detector)
            started = time.perf_counter()
            thumbs[f.file] = thumbnail(decoded.image, config.side)
            seconds["thumbnail"] += time.perf_counter() - started
            probed = media_io.probe_media(REALDATA / f.file, camera_id=f.camera, file_path=f.file, file_mtime=False)
            times[f.file] = probed["timestamp"].timestamp() if probed.get("timestamp") else None
        imgs = [media_io.load_image(REALDATA / f.file, max_side=DETECT_SIDE) for f in members]
        prepared = [detector.prepare(image) for image in imgs]
        canvases, boxes = [c for c, _ in prepared], [b for _, b in prepared]
        started = time.perf_counter()
        dets = detector.detect_prepared(canvases, boxes)
        seconds["detector"] += time.perf_counter() - started
        started = time.perf_counter()
        looked, _ = second_look.look_again(detector, canvases, boxes, dets, second_look.BELOW)
        seconds["second_look"] += time.perf_counter() - started
        for again, found in ((False, dets), (True, looked)):
            fused[again][trigger] = fuse_burst(imgs, found, detector, config=BurstConfig()).detections

    scored = [t for t in by_trigger if split.get(t) == part]
    out, per_frame = {}, {}  # per_frame: file -> its boxes at min_confidence, and what the background adds (--frames)
    shown = lambda found: [(d.category, round(d.conf, 2), d.source) for d in found if d.conf >= min_confidence]  # noqa: E731
    for again in (False, True):
        base_name, background_name = (BASE, WITH_BACKGROUND) if not again else (SECOND_LOOK + BASE, SECOND_LOOK + WITH_BACKGROUND)
        base = {f.file: found for t, members in by_trigger.items() for f, found in zip(members, fused[again][t])}
        boxed = {file for file, found in base.items() if any(d.conf >= min_confidence for d in found)}
        by_camera = defaultdict(list)
        for trigger, members in by_trigger.items():
            files = [f.file for f in members]
            boxes = {f: [d.bbox for d in base.get(f, ()) if d.conf >= min_confidence] for f in files}
            by_camera[members[0].camera].append(Trigger.of(trigger, files, thumbs, [times[f] for f in files], boxes))
        started = time.perf_counter()
        added = {}
        for triggers in by_camera.values():
            added.update(missed_boxes(triggers, boxed, config))
        seconds["background"] += (time.perf_counter() - started) / 2  # computed twice, once per look
        out[base_name], out[background_name] = base, {}
        for trigger in scored:
            for f in by_trigger[trigger]:
                extra = [FusedDetection("animal", "animal", config.prior_conf, added[f.file].bbox, "background")] if f.file in added else []
                out[background_name][f.file] = base[f.file] + extra
                if again:
                    per_frame[f.file] = {"kind": f.kind, "infrared": f.infrared, "boxes": shown(base[f.file]), "background_adds": shown(extra)}
    results = {}
    for method, by_file in out.items():
        scores = {s: _Score() for s in SLICES}
        for trigger in scored:
            for f in by_trigger[trigger]:
                for s in ("all", "infrared" if f.infrared else "daylight"):
                    scores[s].add(f, by_file[f.file], min_confidence)
        results[method] = {s: sc.summary() for s, sc in scores.items()}
    n = sum(len(by_trigger[t]) for t in scored)
    # Every image of a camera is detected and thumbnailed (the background needs them all), so every
    # cost is per image of all of them.
    everything = len(thumbs)
    per_image = {name: 1000 * seconds[name] / everything for name in ("detector", "second_look", "thumbnail", "background")}
    return {"part": part, "frames": n, "results": results, "per_frame": per_frame,
            "counts": {"images_in_context": everything, "part_images_added_to": sum(1 for f in per_frame.values() if f["background_adds"])},
            "ms_per_image": {k: round(v, 1) for k, v in per_image.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("tune", "holdout"), default="tune")
    parser.add_argument("--prior-conf", type=float, default=BackgroundConfig.prior_conf,
                        help="the confidence a background box carries (pipeline.background.conf)")
    parser.add_argument("--model", default="default", choices=("default", "default-camtrap", "default-camtrap-neck"), help="the detector under it")
    parser.add_argument("--frames", action="store_true", help="also print each frame's boxes (second look on), without and with the background")
    args = parser.parse_args(argv)
    report = run(args.part, BackgroundConfig(prior_conf=args.prior_conf), model=args.model)
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    print(f"[{report['part']}] {'method':<32}" + "".join(f" | {s}: img-recall located box-recall prec empty-boxes" for s in SLICES))
    for method, slices in report["results"].items():
        print(f"[{report['part']}] {method:<32}" + "".join(
            f" | {s}: {fmt(r['image_recall'])} ({r['animal_frames']}) {fmt(r['located_recall'])} {fmt(r['box_recall'])} {fmt(r['precision'])} "
            f"{r['boxes_on_empty']}/{r['empty_frames']}" for s, r in slices.items()))
    print("counts:", report["counts"], "ms per image:", report["ms_per_image"])
    if args.frames:
        for file, frame in report["per_frame"].items():
            print(f"  {file} {frame['kind']} {'infrared' if frame['infrared'] else 'daylight'} | "
                  f"boxes: {frame['boxes']} | background adds: {frame['background_adds']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
