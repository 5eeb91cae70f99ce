"""Copy a run's Stage 3 outputs from S3 to this machine and open them in DuckDB.

Analysis is cheapest where the analyst sits: ``odins-ravne stage3 download s3://BUCKET/OUTPUT DIR``
fetches the Stage 3 database and the Parquet tables (not the crop JPEGs, unless asked, nor the
``_work`` checkpoints), so queries run locally with no S3 requests and no httpfs.

Object keys come from a bucket that others write to, so every key is checked before anything is
written: a key that is absolute, contains ``..`` or a backslash, or would otherwise resolve outside
``local_dir`` is refused, and the whole download with it; so is a plan that cannot be laid out on a
file system (a key that is both a file and a folder, a name too long), before anything is written.

A file is fetched again when its ETag differs from the one recorded when it was last fetched
(``.odins_ravne_download.json`` in ``local_dir``), not only when its size does: a re-run rewrites
the DuckDB file and Parquet parts with new content and often the same size.

This module does not import Dagster.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any, Iterable
from urllib.parse import urlparse

from gpu_ops import schemas
from gpu_ops.fileio import atomic_fill, atomic_write
from resources.aws import aws_client
from resources.stage3 import DB_KEY

RECORD = ".odins_ravne_download.json"  # key -> ETag of what was fetched
NAME_MAX, PATH_MAX = 255, 4096  # Linux limits, bytes


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

    Files already fetched with the same ETag are not fetched again, so an interrupted download
    resumes and a re-run's new content always arrives. Each file is written to a temporary name and renamed: no half-written Parquet.
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
                plan.append((obj["Key"], target, obj["Size"], obj.get("ETag", "")))
    if not any(key.endswith(DB_KEY) for key, _, _, _ in plan):
        raise FileNotFoundError(
            f"no Stage 3 database at {s3_uri.rstrip('/')}/{DB_KEY}: run `odins-ravne process ... --out {s3_uri}` first"
        )
    _check_layout(local, [(key[len(prefix):], target) for key, target, _, _ in plan])
    record_path = local / RECORD
    fetched_before = json.loads(record_path.read_text()) if record_path.is_file() else {}
    fetched = 0
    for key, target, size, etag in plan:
        relative = key[len(prefix):]
        seen = fetched_before.get(relative)
        if target.is_file() and target.stat().st_size == size and seen == etag:
            continue
        atomic_fill(target, lambda handle, key=key: client.download_fileobj(bucket, key, handle))
        fetched_before[relative] = etag
        atomic_write(record_path, json.dumps(fetched_before, indent=0, sort_keys=True).encode())
        fetched += 1
    if echo:
        echo(f"{fetched} file(s) downloaded, {len(plan) - fetched} already up to date, into {local}")
    return safe_local_path(local, DB_KEY)


def _check_layout(local: Path, entries: list[tuple[str, Path]]) -> None:
    """Refuse keys no file system can hold side by side: one that is also another's folder, or too long."""
    keys = {relative for relative, _ in entries}
    for relative, target in entries:
        parts = relative.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in keys:
                raise UnsafeKeyError(f"refusing the download: {folder!r} is both a file and the folder of {relative!r} in the bucket")
        if any(len(part.encode()) > NAME_MAX for part in parts) or len(str(target).encode()) >= PATH_MAX:
            raise UnsafeKeyError(f"refusing the download: object key {relative[:80]!r}... is too long for a local file name")
