"""A small Pipes job for the Odin tests: the stand-in for ``gpu_ops.entrypoint`` inside a Batch job.

It speaks Pipes through S3 as the real entrypoint does when the Batch client launches it, and
checkpoints like a GPU stage (``gpu_ops.workstate``): results part first, done marker last, per
chunk. Every key it processes is appended to a ledger file, so a test can see what was redone.
Behaviour comes from the extras: ``mode`` is ``ok``, ``exit3`` (a real failure),
``reclaim_once`` (the first attempt dies of SIGKILL, as when a spot host disappears),
``sleep`` (runs until terminated) or ``die_after_chunk`` (shard ``die_shard`` SIGKILLs itself after
its first committed chunk).
"""

from __future__ import annotations

import os
import signal
import sys
import time

import boto3
import pyarrow as pa
from dagster_pipes import PipesS3ContextLoader, PipesS3MessageWriter, open_dagster_pipes

from gpu_ops.workstate import WorkState
from gpu_ops.storage import Storage


def main() -> int:
    s3 = boto3.client("s3")
    with open_dagster_pipes(context_loader=PipesS3ContextLoader(client=s3), message_writer=PipesS3MessageWriter(client=s3, interval=1)) as pipes:
        extras = pipes.extras
        mode = extras.get("mode", "ok")
        attempt = int(os.environ.get("AWS_BATCH_JOB_ATTEMPT", "1"))
        pipes.log.info(f"attempt {attempt} in queue {os.environ.get('AWS_BATCH_JQ_NAME')} mode {mode}")
        print(f"stdout of job {os.environ.get('AWS_BATCH_JOB_ID')}", flush=True)
        if mode == "exit3":
            print("model file is corrupt", file=sys.stderr, flush=True)
            sys.exit(3)
        if mode == "reclaim_once" and attempt == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "sleep":
            time.sleep(120)
        # The production shard contract (resources.stage_plan.shard_extras): shard=[index, count], shard_keys.
        index = (extras.get("shard") or [0, 1])[0]
        shard_keys = extras.get("shard_keys", [])
        state = WorkState(Storage(extras["out"]), "detect", "testsig", extras["camera_id"])
        done = state.done()
        todo = [k for k in shard_keys if k not in done]
        chunk = int(extras.get("chunk", 2))
        for number, start in enumerate(range(0, len(todo), chunk)):
            keys = todo[start : start + chunk]
            with open(extras["ledger"], "a") as ledger:
                ledger.write("".join(f"{k}\n" for k in keys))
            state.commit(keys, pa.table({"key": keys, "value": [len(k) for k in keys]}), {})
            if mode == "die_after_chunk" and index == extras.get("die_shard") and number == 0:
                os.kill(os.getpid(), signal.SIGKILL)
        pipes.report_asset_materialization(metadata={"processed": len(todo), "skipped": len(shard_keys) - len(todo)})
        pipes.report_custom_message({"shard": index, "processed": len(todo)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
