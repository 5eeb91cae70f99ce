"""One small storage abstraction over local paths, ``file://`` and ``s3://`` URIs.

Every asset and the ``gpu_ops`` entrypoint read and write through :class:`Storage`, so the same code
runs on a laptop and against S3 (or any S3-compatible endpoint: ``AWS_ENDPOINT_URL`` or the profile's
``storage.endpoint_url``). Writes are atomic: local files are written to a temporary name in the same
folder and renamed; S3 PUTs are atomic by nature. A reader never sees half a file.

This module does not import Dagster: the ``gpu_ops`` entrypoint uses it inside a Batch container.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from gpu_ops.fileio import atomic_write
from gpu_ops.settings import HOME_REGION, StorageSettings


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # path relative to the storage root, POSIX separators
    size: int
    mtime: float


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def join(root: str, *parts: str) -> str:
    """Join URI or path parts with '/', never producing a doubled separator."""
    out = str(root).rstrip("/")
    for part in parts:
        part = str(part).strip("/")
        if part:
            out = f"{out}/{part}"
    return out


class Storage:
    """Read, write and list under a root that is a local folder or an ``s3://bucket/prefix``."""

    def __init__(self, root: str, *, endpoint_url: str | None = None, region: str | None = None):
        root = str(root)
        if root.startswith("file://"):
            root = urlparse(root).path
        self.root = root.rstrip("/") if is_s3(root) else str(Path(root).expanduser().resolve())
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or HOME_REGION
        self._s3 = None

    # -- addressing -----------------------------------------------------------------------------
    @property
    def is_s3(self) -> bool:
        return is_s3(self.root)

    def uri(self, key: str = "") -> str:
        return join(self.root, key)

    def local_path(self, key: str = "") -> Path:
        if self.is_s3:
            raise ValueError(f"{self.root} is on S3: there is no local path for {key!r}")
        return Path(self.uri(key))

    def child(self, key: str) -> "Storage":
        return Storage(self.uri(key), endpoint_url=self.endpoint_url, region=self.region)

    @property
    def _bucket_prefix(self) -> tuple[str, str]:
        parsed = urlparse(self.root)
        return parsed.netloc, parsed.path.lstrip("/")

    def _s3_key(self, key: str) -> str:
        bucket_prefix = self._bucket_prefix[1]
        return join(bucket_prefix, key) if bucket_prefix else key.strip("/")

    @property
    def s3(self):
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region)
        return self._s3

    # -- reading --------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        if not self.is_s3:
            return self.local_path(key).exists()
        bucket, _ = self._bucket_prefix
        try:
            self.s3.head_object(Bucket=bucket, Key=self._s3_key(key))
            return True
        except self.s3.exceptions.ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def read_bytes(self, key: str) -> bytes:
        if not self.is_s3:
            return self.local_path(key).read_bytes()
        bucket, _ = self._bucket_prefix
        return self.s3.get_object(Bucket=bucket, Key=self._s3_key(key))["Body"].read()

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Every file under ``prefix`` (recursively), sorted by key; hidden names are skipped."""
        if not self.is_s3:
            base = self.local_path(prefix)
            if not base.exists():
                return
            files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
            for path in files:
                key = path.relative_to(self.local_path()).as_posix()
                if _hidden(key) or (start_after and key <= start_after):
                    continue
                stat = path.stat()
                yield ObjectInfo(key, stat.st_size, stat.st_mtime)
            return
        bucket, _ = self._bucket_prefix
        root_key = self._s3_key("")
        kwargs = {"Bucket": bucket, "Prefix": self._s3_key(prefix) if prefix else (root_key + "/" if root_key else "")}
        if start_after:
            kwargs["StartAfter"] = self._s3_key(start_after)
        for page in self.s3.get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", []):
                key = obj["Key"][len(root_key) + 1 :] if root_key else obj["Key"]
                if not _hidden(key):
                    yield ObjectInfo(key, obj["Size"], obj["LastModified"].timestamp())

    def top_level_folders(self) -> list[str]:
        """Names of the folders (or S3 common prefixes) directly under the root."""
        if not self.is_s3:
            base = self.local_path()
            if not base.exists():
                return []
            return sorted(p.name for p in base.iterdir() if p.is_dir() and not _hidden(p.name))
        bucket, _ = self._bucket_prefix
        root_key = self._s3_key("")
        prefix = root_key + "/" if root_key else ""
        names: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(prefix) :].strip("/")
                if name and not _hidden(name):
                    names.append(name)
        return sorted(names)

    @contextlib.contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        """A local file with the object's bytes: the file itself when local, a temporary copy for S3."""
        if not self.is_s3:
            yield self.local_path(key)
            return
        suffix = PurePosixPath(key).suffix
        with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
            bucket, _ = self._bucket_prefix
            self.s3.download_fileobj(bucket, self._s3_key(key), tmp)
            tmp.flush()
            yield Path(tmp.name)

    def read_parquet(self, prefix: str, *, empty: pa.Schema | None = None,
                     columns: list[str] | None = None) -> pa.Table | None:
        """All Parquet files under ``prefix`` as one table; when there are none, an empty table of
        the ``empty`` schema if one is given, else None. ``columns``: read only these."""
        tables = [
            pq.read_table(io.BytesIO(self.read_bytes(info.key)), columns=columns)
            for info in self.list(prefix)
            if info.key.endswith(".parquet")
        ]
        if not tables:
            return empty.empty_table() if empty is not None else None
        return pa.concat_tables(tables, promote_options="default")

    # -- writing --------------------------------------------------------------------------------
    def write_bytes(self, key: str, data: bytes) -> str:
        if self.is_s3:
            bucket, _ = self._bucket_prefix
            self.s3.put_object(Bucket=bucket, Key=self._s3_key(key), Body=data)
            return self.uri(key)
        path = atomic_write(self.local_path(key), data)
        return str(path)

    def write_parquet(self, key: str, table: pa.Table) -> str:
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        return self.write_bytes(key, buffer.getvalue())

    def delete_prefix(self, prefix: str) -> int:
        """Remove everything under ``prefix``; returns how many files went."""
        if not self.is_s3:
            path = self.local_path(prefix)
            if not path.exists():
                return 0
            count = sum(1 for p in path.rglob("*") if p.is_file()) if path.is_dir() else 1
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            return count
        bucket, _ = self._bucket_prefix
        keys = [self._s3_key(info.key) for info in self.list(prefix)]
        for start in range(0, len(keys), 1000):
            self.s3.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]]}
            )
        return len(keys)


def _hidden(key: str) -> bool:
    # Temporary files of atomic writes and dot-files (.DS_Store, .dagster) are never data.
    return any(part.startswith(".") for part in PurePosixPath(key).parts)


def open_storage(root: str, settings: StorageSettings | None = None) -> Storage:
    """The one way to open storage from a profile: its endpoint and region (``profile.storage``)."""
    settings = settings or StorageSettings()
    return Storage(root, endpoint_url=settings.endpoint_url, region=settings.region)
