"""The realdata manifest (``../shared/realdata/manifest.json``) and its committed tune/holdout split.

Decisions, written once here:

- **What counts.** Images only (the two videos are left out: Stage 1 samples video frames, and the
  manifest has no per-frame truth). Frames under ``MIN_WIDTH`` pixels wide are left out too:
  camtrapR's 100x75 thumbnails are, as the realdata README says, too small for detection. A frame
  labelled ``animal: ...`` is an animal frame, ``person`` a person frame, ``empty`` an empty frame;
  a label starting ``uncertain`` is counted nowhere (neither a miss nor a false box).
- **The split** (``bench/realdata_split.json``) is by trigger: a manifest ``group_id`` (a burst), or
  the file alone when it has none, so a burst never straddles the two parts. Frames of one trigger
  share a camera; the split keeps whole triggers, not whole cameras, because two Peru cameras hold
  most of the infrared bursts and holding one out would leave nothing to tune on. Within each
  stratum (source folder x label kind, x infrared for animals) triggers are ordered by the sha256 of their key
  and taken into ``holdout`` until it holds ``HOLDOUT_SHARE`` of the stratum's frames: deterministic,
  and each part gets infrared and daylight, animals and empties. ``python -m bench.realdata
  --write-split`` rewrites it; it is committed, and must not be rewritten to move a hard case.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
SPLIT_FILE = Path(__file__).with_name("realdata_split.json")
MIN_WIDTH = 320
HOLDOUT_SHARE = 0.4


@dataclass(frozen=True)
class Frame:
    file: str  # relative to the realdata folder
    camera: str  # the folder holding it: one camera (or one source's loose files)
    trigger: str  # group_id, or the file itself
    infrared: bool
    kind: str  # animal | person | empty | uncertain
    boxes: tuple[tuple[float, float, float, float], ...]  # normalized x, y, w, h (by eye, approximate)
    width: int
    height: int


def label_kind(label: str) -> str:
    for kind in ("animal", "person", "empty", "uncertain"):
        if label.startswith(kind):
            return kind
    raise ValueError(f"manifest label {label!r} is none of animal:, person, empty, uncertain")


def read_manifest(root: Path = REALDATA) -> list[Frame]:
    """The frames of the manifest that count (module doc), in file order."""
    path = root / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"no realdata manifest at {path}: point --realdata at the folder holding manifest.json")
    entries = json.loads(path.read_text())["files"]
    frames = []
    for entry in entries:
        if entry["media_type"] != "image" or entry["width"] < MIN_WIDTH:
            continue
        file = entry["file"]
        frames.append(Frame(
            file=file, camera=str(Path(file).parent), trigger=entry.get("group_id") or file,
            infrared=bool(entry["infrared"]), kind=label_kind(entry["label"]),
            boxes=tuple(tuple(b["bbox_xywh_norm"]) for b in entry.get("boxes_approx") or ()),
            width=int(entry["width"]), height=int(entry["height"]),
        ))
    return sorted(frames, key=lambda f: f.file)


def make_split(frames: list[Frame]) -> dict[str, list[str]]:
    """``{"tune": [trigger...], "holdout": [trigger...]}`` (module doc)."""
    triggers: dict[str, list[Frame]] = defaultdict(list)
    for f in frames:
        triggers[f.trigger].append(f)
    strata: dict[tuple, list[str]] = defaultdict(list)
    for key, members in triggers.items():
        first = members[0]
        kinds = {m.kind for m in members} - {"uncertain"}
        kind = "animal" if "animal" in kinds else (min(kinds) if kinds else "uncertain")
        # Empty and person triggers are few: infrared and daylight share a stratum so both parts get some.
        strata[(first.file.split("/")[0], kind, first.infrared if kind == "animal" else None)].append(key)
    split = {"tune": [], "holdout": []}
    for keys in strata.values():
        keys.sort(key=lambda k: hashlib.sha256(k.encode()).hexdigest())
        total = sum(len(triggers[k]) for k in keys)
        held = 0
        for k in keys:
            # Hold out while that brings the share closer to HOLDOUT_SHARE: a stratum of one trigger tunes.
            if abs(held + len(triggers[k]) - HOLDOUT_SHARE * total) < abs(held - HOLDOUT_SHARE * total):
                split["holdout"].append(k)
                held += len(triggers[k])
            else:
                split["tune"].append(k)
    return {part: sorted(keys) for part, keys in split.items()}


def read_split(path: Path = SPLIT_FILE) -> dict[str, str]:
    """trigger -> ``tune`` | ``holdout``."""
    data = json.loads(path.read_text())
    return {key: part for part in ("tune", "holdout") for key in data[part]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the committed tune/holdout split of the realdata manifest.")
    parser.add_argument("--realdata", type=Path, default=REALDATA)
    parser.add_argument("--write-split", action="store_true", help=f"write {SPLIT_FILE.name}")
    args = parser.parse_args(argv)
    frames = read_manifest(args.realdata)
    split = make_split(frames)
    part_of = {k: part for part, keys in split.items() for k in keys}
    for part in ("tune", "holdout"):
        members = [f for f in frames if part_of[f.trigger] == part]
        print(f"{part}: {len(split[part])} triggers, {len(members)} frames, "
              f"{sum(f.infrared for f in members)} infrared, {sum(f.kind == 'animal' for f in members)} animal, "
              f"{sum(f.kind == 'empty' for f in members)} empty")
    if args.write_split:
        SPLIT_FILE.write_text(json.dumps({"rule": "bench/realdata.py make_split", **split}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
