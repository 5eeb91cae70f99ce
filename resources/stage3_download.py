"""Copy a run's Stage 3 outputs from S3 to this machine and open them in DuckDB.

Analysis is cheapest where the analyst sits: ``odins-ravne stage3 download s3://BUCKET/OUTPUT DIR``
fetches the Stage 3 database and the Parquet tables (not the crop JPEGs, unless asked, nor the
``_work`` checkpoints), so queries run locally with no S3 requests and no httpfs.

Object keys come from a bucket that others write to, so every key is checked before anything is
written: a key that is absolute, contains ``..`` or a backslash, or would otherwise resolve outside
``local_dir`` is refused, and the whole download with it.

This module does not import Dagster.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any, Iterable
from urllib.parse import urlparse

from gpu_ops import schemas
from gpu_ops.fileio import atomic_fill
from resources.aws import aws_client

DB_KEY = "stage3/odins_ravne.duckdb"


class UnsafeKeyError(ValueError):
    pass


def safe_local_path(local_dir: Path, relative_key: str) -> Path:
    """Where ``relative_key`` goes under ``local_dir``; raises :class:`UnsafeKeyError` if it would escape."""
    if not relative_key or relative_key.startswith("/") or "\\" in relative_key or "\x00" in relative_key:
        raise UnsafeKeyError(f"refusing object key {relative_key!r}: absolute, empty or with a backslash")
    parts = PurePosixPath(relative_key).parts
    if any(part in ("..", ".") for part in parts) or (parts and parts[0].endswith(":")):
        raise UnsafeKeyError(f"refusing object key {relative_key!r}: it would write outside {local_dir}")
    root = local_dir.resolve()
    target = (root / Path(*parts)).resolve()
    if root != target and root not in target.parents:  # e.g. through a symlink already in local_dir
        raise UnsafeKeyError(f"refusing object key {relative_key!r}: it resolves to {target}, outside {root}")
    return target


def _wanted(relative_key: str, with_crops: bool) -> bool:
    top = relative_key.split("/", 1)[0]
    if relative_key == DB_KEY or top == "stage3":
        return True
    if top not in schemas.TABLES:
        return False  # _work checkpoints, pipes exchange, anything else
    if top == "crops" and not relative_key.endswith(".parquet"):
        return with_crops
    return True


def _list(client: Any, bucket: str, prefix: str) -> Iterable[dict]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def download_stage3(s3_uri: str, local_dir: str | os.PathLike, *, client: Any = None, with_crops: bool = False, echo=None) -> Path:
    """Copy the Stage 3 outputs under ``s3_uri`` into ``local_dir``; returns the local DuckDB path.

    Files already present with the same size are not fetched again, so an interrupted download
    resumes. Each file is written to a temporary name and renamed: no half-written Parquet.
    """
    parsed = urlparse(s3_uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{s3_uri!r} is not an s3:// URI; give the run's output root, e.g. s3://bucket/output")
    bucket, root = parsed.netloc, parsed.path.strip("/")
    prefix = f"{root}/" if root else ""
    client = client or aws_client("s3")
    local = Path(local_dir).expanduser()
    local.mkdir(parents=True, exist_ok=True)

    plan = []
    for obj in _list(client, bucket, prefix):
        relative = obj["Key"][len(prefix) :]
        if relative.endswith("/") or not relative:
            continue  # folder markers
        top = relative.split("/", 1)[0]
        if top in schemas.TABLES or top == "stage3" or ".." in relative or relative.startswith("/") or "\\" in relative:
            target = safe_local_path(local, relative)  # checked before anything is written
            if _wanted(relative, with_crops):
                plan.append((obj["Key"], target, obj["Size"]))
    if not any(key.endswith(DB_KEY) for key, _, _ in plan):
        raise FileNotFoundError(
            f"no Stage 3 database at {s3_uri.rstrip('/')}/{DB_KEY}: run `odins-ravne process ... --out {s3_uri}` first"
        )
    fetched = 0
    for key, target, size in plan:
        if target.exists() and target.stat().st_size == size:
            continue
        atomic_fill(target, lambda handle, key=key: client.download_fileobj(bucket, key, handle))
        fetched += 1
    if echo:
        echo(f"{fetched} file(s) downloaded, {len(plan) - fetched} already present, into {local}")
    return safe_local_path(local, DB_KEY)


def open_stage3(db_path: str | os.PathLike):
    """A read-only DuckDB connection to a downloaded Stage 3 database."""
    import duckdb

    return duckdb.connect(str(db_path), read_only=True)
