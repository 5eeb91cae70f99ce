"""The file primitives every layer shares: one atomic write, one sha256.

An atomic write goes to a temporary name in the target's folder (hidden, so listings skip it) and is
renamed over the target: a reader, or a run that crashed halfway, never sees half a file. Written
files get the permissions a plain ``open(..., "w")`` would (umask applied): ``mkstemp`` alone makes
them 0600, which keeps colleagues and web servers from reading the results.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

_CHUNK = 1 << 20


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, *, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """A binary handle whose content replaces ``path`` only when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_open(path) as handle:
        handle.write(data)
    return Path(path)


def atomic_fill(path: str | os.PathLike, fill: Callable[[BinaryIO], None], *, suffix: str = ".part") -> Path:
    """Let ``fill`` stream into a handle (a download, an encoder), then put the file at ``path`` atomically."""
    with atomic_open(path, suffix=suffix) as handle:
        fill(handle)
    return Path(path)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
