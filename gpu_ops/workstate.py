"""Checkpoints of the GPU stages: what is done survives a crash or a spot reclaim.

A stage works through a camera in chunks. Each chunk writes its result Parquet first and its *done*
marker last, both atomically, under ``_work/<stage>/<signature>/camera_id=<id>/``. The signature is a
digest of everything that changes the result (model weights, thresholds, image size), so changing the
model starts a fresh work folder instead of mixing results, and going back reuses the old one.

On start a stage reads the done markers and skips every key they list: work already done is never
redone, and a chunk that crashed halfway (result without marker) is simply done again.
"""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa

DONE_SCHEMA = pa.schema([("key", pa.string()), ("status", pa.string()), ("failure", pa.string())])


def signature(parts: dict) -> str:
    """A short stable digest of the settings that change a stage's result."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def work_prefix(stage: str, sig: str, camera_id: str) -> str:
    return f"_work/{stage}/{sig}/camera_id={camera_id}"


def chunk_name(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:20]


class WorkState:
    """Reads and writes the chunk results and done markers of one stage for one camera, under
    ``work_prefix(stage, signature, camera_id)`` of the output storage."""

    def __init__(self, storage, stage: str, sig: str, camera_id: str):
        self.storage = storage
        self.prefix = work_prefix(stage, sig, camera_id)

    def done(self) -> dict[str, str | None]:
        """key -> failure (None when it succeeded) for every key of a finished chunk."""
        table = self.storage.read_parquet(f"{self.prefix}/done")
        if table is None:
            return {}
        return dict(zip(table.column("key").to_pylist(), table.column("failure").to_pylist()))

    def results(self) -> pa.Table | None:
        return self.storage.read_parquet(f"{self.prefix}/results")

    def commit(self, keys: list[str], results: pa.Table, failures: dict[str, str]) -> str:
        """Write one chunk: results first, then the marker that makes it count."""
        name = chunk_name(keys)
        self.storage.write_parquet(f"{self.prefix}/results/{name}.parquet", results)
        marker = pa.table(
            {
                "key": keys,
                "status": ["failed" if k in failures else "ok" for k in keys],
                "failure": [failures.get(k) for k in keys],
            },
            schema=DONE_SCHEMA,
        )
        self.storage.write_parquet(f"{self.prefix}/done/{name}.parquet", marker)
        return name
