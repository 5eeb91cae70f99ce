"""Synthetic-load benchmark for the Stage 3 analyst views (issue 5).

Writes 10 million detections across 500 cameras as Hive-partitioned Parquet, laid out exactly as the
pipeline writes them (``detections/camera_id=<id>/``, ``species_labels/camera_id=<id>/``, one
``clusters`` file), builds the Stage 3 views over them in DuckDB (the contract views plus
``hugin.stage3_views``) into a database file with ``observations`` materialized (detections joined
to their species labels and sites once, at build time), and times the species-by-site-by-month
question against it, opened read-only as ``odins-ravne query`` does.

    .venv/bin/python -m bench.hugin_query [--detections N] [--cameras N] [--workdir DIR] [--keep]

Prints the timings and writes ``bench/results/hugin_query-<UTC time>.json``. The target is < 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gpu_ops import schemas
from odins_ravne_assets.hugin.stage3_views import ANALYST_QUERIES, extra_view_statements

RESULTS = Path(__file__).resolve().parent / "results"
SPECIES = [f"species {i:02d}" for i in range(40)]
TARGET_S = 2.0


def generate(root: Path, n_detections: int, n_cameras: int, seed: int = 5) -> dict:
    """Write the synthetic tables; returns row counts."""
    rng = np.random.default_rng(seed)
    per_camera = n_detections // n_cameras
    start = np.datetime64("2024-01-01T00:00:00", "us")
    year_us = 365 * 24 * 3600 * 1_000_000
    # Zipf-like species frequencies: a few common species, a long tail, as in real surveys.
    weights = 1.0 / np.arange(1, len(SPECIES) + 1)
    weights /= weights.sum()
    labels_written = 0
    for cam in range(n_cameras):
        camera = f"cam-{cam:03d}"
        n = per_camera + (1 if cam < n_detections % n_cameras else 0)
        idx = pa.array(np.arange(n, dtype=np.int64)).cast(pa.string())
        media_no = rng.integers(0, max(1, n // 2), n)  # about two detections per media file
        file_path = pc.binary_join_element_wise("IMG_", pa.array(media_no).cast(pa.string()), ".JPG", "")
        detection_id = pc.binary_join_element_wise(f"{cam:04x}", idx, "-0-0", "")
        ts = start + rng.integers(0, year_us, n).astype("timedelta64[us]")
        category = rng.choice(np.array(["animal", "person", "vehicle"]), n, p=[0.9, 0.07, 0.03])
        conf = rng.uniform(0.05, 1.0, n).astype(np.float32)
        camera_col = pa.array([camera] * n, pa.string())
        dets = pa.table({
            "camera_id": camera_col, "detection_id": detection_id, "file_path": file_path,
            "sha256": pa.nulls(n, pa.string()), "frame_number": pa.array(np.zeros(n, np.int32)),
            "timestamp": pa.array(ts, schemas.TIMESTAMP), "category": pa.array(category),
            "label": pa.array(category), "conf": pa.array(conf),
            "bbox_x": pa.array(rng.uniform(0, 0.5, n).astype(np.float32)),
            "bbox_y": pa.array(rng.uniform(0, 0.5, n).astype(np.float32)),
            "bbox_w": pa.array(rng.uniform(0.05, 0.5, n).astype(np.float32)),
            "bbox_h": pa.array(rng.uniform(0.05, 0.5, n).astype(np.float32)),
            "source": pa.array(["detector"] * n), "model": pa.array(["synthetic"] * n),
        }).cast(schemas.DETECTIONS)
        _write(root / "detections" / f"camera_id={camera}" / "part-0.parquet", dets)

        animal = pc.equal(dets["category"], "animal")
        chosen = dets.filter(animal)
        m = chosen.num_rows
        species = np.array(SPECIES)[rng.choice(len(SPECIES), m, p=weights)]
        labels = pa.table({
            "camera_id": chosen["camera_id"], "detection_id": chosen["detection_id"],
            "file_path": chosen["file_path"], "crop_path": pa.nulls(m, pa.string()),
            "category": chosen["category"], "detector_label": chosen["label"],
            "species": pa.array(species), "scientific_name": pa.array(np.char.add("Genus ", species)),
            "taxon_rank": pa.array(["species"] * m), "taxon_class": pa.array(["Mammalia"] * m),
            "score": pa.array(rng.uniform(0.3, 1.0, m).astype(np.float32)),
            "classification_source": pa.array(["synthetic"] * m),
        }).cast(schemas.SPECIES_LABELS)
        _write(root / "species_labels" / f"camera_id={camera}" / "part-0.parquet", labels)
        labels_written += m

    # 500 cameras in groups of about eight per site, like clusters the pipeline would find.
    cams = [f"cam-{c:03d}" for c in range(n_cameras)]
    clusters = pa.table({
        "camera_id": cams,
        "latitude": 60 + rng.uniform(0, 2, n_cameras), "longitude": 9 + rng.uniform(0, 2, n_cameras),
        "n_media_with_gps": pa.array(np.full(n_cameras, 100, np.int32)),
        "cluster_id": pa.array((np.arange(n_cameras) // 8).astype(np.int32)),
        "site_id": [f"site-{c // 8 + 1:03d}" for c in range(n_cameras)],
        "status": ["clustered"] * n_cameras, "probability": np.ones(n_cameras),
    }).cast(schemas.CLUSTERS)
    _write(root / "clusters" / "clusters.parquet", clusters)
    for name in ("media", "events", "crops"):
        _write(root / name / "empty.parquet", schemas.empty(schemas.TABLES[name]))
    return {"detections": n_detections, "species_labels": labels_written, "cameras": n_cameras}


def _write(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")


def build_database(root: Path, db_path: Path) -> float:
    """Build the Stage 3 database file as the pipeline does; returns the seconds it took."""
    t = time.perf_counter()
    tmp = db_path.with_name(db_path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    for name in ("detections", "species_labels"):
        # camera_id is written in every row as well as in the path (schemas.py): read the column.
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{root / name}/*/*.parquet', "
                    "hive_partitioning = false)")
    for name in ("clusters", "media", "events", "crops"):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{root / name}/*.parquet')")
    for sql in extra_view_statements(materialize_observations=True):
        con.execute(sql)
    con.close()
    tmp.replace(db_path)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=int, default=10_000_000)
    parser.add_argument("--cameras", type=int, default=500)
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the Parquet (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated Parquet")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after the first (cold) one")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hugin-bench-"))
    try:
        t0 = time.perf_counter()
        counts = generate(workdir, args.detections, args.cameras)
        generate_s = time.perf_counter() - t0
        print(f"generated {counts['detections']:,} detections, {counts['species_labels']:,} species labels, "
              f"{counts['cameras']} cameras in {generate_s:.1f} s ({_du(workdir) / 1e6:.0f} MB Parquet)")
        question, sql = ANALYST_QUERIES["species_by_site_by_month"]
        db_path = workdir / "stage3" / "odins_ravne.duckdb"
        db_path.parent.mkdir(parents=True, exist_ok=True)
        build_s = build_database(workdir, db_path)
        print(f"built the Stage 3 database (observations materialized) in {build_s:.1f} s, "
              f"{db_path.stat().st_size / 1e6:.0f} MB")
        con = duckdb.connect(str(db_path), read_only=True)  # as `odins-ravne query` opens it
        times, rows = [], None
        for _ in range(1 + args.repeat):
            t = time.perf_counter()
            rows = con.execute(sql).fetchall()
            times.append(time.perf_counter() - t)
        cold, warm = times[0], statistics.median(times[1:]) if len(times) > 1 else times[0]
        verdict = "OK" if warm < TARGET_S else "SLOWER THAN TARGET"
        print(f"{question}\n  {len(rows):,} result rows; cold {cold:.2f} s, warm median {warm:.2f} s "
              f"(target < {TARGET_S} s): {verdict}")
        result = {
            "benchmark": "hugin_query.species_by_site_by_month",
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "detections": counts["detections"], "species_labels": counts["species_labels"],
            "cameras": counts["cameras"], "result_rows": len(rows),
            "cold_s": round(cold, 3), "warm_median_s": round(warm, 3), "runs_s": [round(t, 3) for t in times],
            "target_s": TARGET_S, "meets_target": warm < TARGET_S, "generate_s": round(generate_s, 1),
            "stage3_build_s": round(build_s, 1), "load_average_1m": round(os.getloadavg()[0], 2),
            "duckdb": duckdb.__version__, "pyarrow": pa.__version__, "cpus": os.cpu_count(),
            "python": platform.python_version(), "sql": sql.strip(),
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"hugin_query-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
        return 0 if warm < TARGET_S else 1
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


if __name__ == "__main__":
    raise SystemExit(main())
