"""One camera's lease: at most one run does a camera's GPU work at a time, on local and S3 output.

Two runs of one camera at once (two ``process`` commands, or one and a run from the UI) would both
see the same pending media and both detect every image: double the cost, and two writers of one
checkpoint folder. The GPU assets hold the camera's lease while they decide what is pending and run
the stage.

Decision: a second run *waits* for the lease (saying who holds it), then finds the work checkpointed
and launches nothing; it neither fails nor pays twice. A holder that died never blocks for good:

* local output: an ``flock`` on ``_work/leases/<camera>.lock``; the kernel drops it when the holder
  exits, kill -9 included.
* S3 output: a lease object ``_work/leases/<camera>.json`` created with ``If-None-Match: *`` and
  renewed by a heartbeat with ``If-Match`` on its ETag. A holder that died stops renewing; once its
  lease has expired a waiter replaces it with ``If-Match`` on the expired object's ETag, so of two
  waiters exactly one wins.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from typing import Callable, Iterator
from urllib.parse import urlparse

LEASE_PREFIX = "_work/leases"
TTL_S = 120.0  # an S3 lease not renewed for this long belongs to a dead run
POLL_S = 2.0


def holder_name(run_id: str) -> str:
    """Who holds a lease, in words a waiting run can log."""
    return f"run {run_id[:8]} (pid {os.getpid()} on {socket.gethostname()})"


@contextlib.contextmanager
def camera_lease(output, camera_id: str, *, holder: str, log: Callable[[str], None] = print,
                 ttl_s: float = TTL_S, poll_s: float = POLL_S) -> Iterator[None]:
    """Hold camera ``camera_id``'s lease in ``output`` (a :class:`gpu_ops.storage.Storage`) for the block."""
    lease = _S3Lease(output, camera_id, holder, ttl_s) if output.is_s3 else _LocalLease(output, camera_id, holder)
    waiting_for = None
    while not lease.try_acquire():
        current = lease.current_holder()
        # None is a holder between taking the lock and writing its name (or releasing): not news.
        if current is not None and current != waiting_for:
            log(f"camera {camera_id} is being processed by {current}; waiting for it to finish")
            waiting_for = current
        time.sleep(poll_s)
    try:
        yield
    finally:
        lease.release()


class _LocalLease:
    def __init__(self, output, camera_id: str, holder: str):
        self.path = output.local_path(f"{LEASE_PREFIX}/{camera_id}.lock")
        self.holder = holder
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # not inherited by the GPU subprocess
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, self.holder.encode())
        self.fd = fd
        return True

    def current_holder(self) -> str | None:
        with contextlib.suppress(OSError):
            return self.path.read_text().strip() or None
        return None

    def release(self) -> None:
        os.ftruncate(self.fd, 0)
        os.close(self.fd)  # closing drops the flock


class _S3Lease:
    def __init__(self, output, camera_id: str, holder: str, ttl_s: float):
        parsed = urlparse(output.uri(f"{LEASE_PREFIX}/{camera_id}.json"))
        self.s3, self.bucket, self.key = output.s3, parsed.netloc, parsed.path.lstrip("/")
        self.holder, self.ttl_s = holder, ttl_s
        self.etag: str | None = None
        self.stop = threading.Event()
        self.heartbeat: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"holder": self.holder, "expires_at": time.time() + self.ttl_s}).encode()

    def _put(self, **condition) -> bool:
        try:
            self.etag = self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=self._body(), **condition)["ETag"]
            return True
        except self.s3.exceptions.ClientError as err:
            # 412: the condition failed; 409: a concurrent conditional write won.
            if err.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise

    def _read(self) -> tuple[dict, str] | None:
        try:
            answer = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except self.s3.exceptions.NoSuchKey:
            return None
        return json.loads(answer["Body"].read()), answer["ETag"]

    def try_acquire(self) -> bool:
        if not self._put(IfNoneMatch="*"):
            current = self._read()
            if current is None or current[0]["expires_at"] > time.time() or not self._put(IfMatch=current[1]):
                return False
        self.heartbeat = threading.Thread(target=self._renew, name=f"lease {self.key}", daemon=True)
        self.heartbeat.start()
        return True

    def _renew(self) -> None:
        while not self.stop.wait(self.ttl_s / 4):
            if not self._put(IfMatch=self.etag):
                return  # expired and taken over: this run was stalled past the TTL

    def current_holder(self) -> str | None:
        current = self._read()
        return current[0]["holder"] if current else None

    def release(self) -> None:
        self.stop.set()
        self.heartbeat.join()
        current = self._read()
        if current is not None and current[1] == self.etag:
            self.s3.delete_object(Bucket=self.bucket, Key=self.key)
