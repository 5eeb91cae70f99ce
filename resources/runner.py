"""Launch the GPU stages (``python -m gpu_ops.entrypoint``) through Dagster Pipes.

Two resources behind the one ``gpu_runner`` key: :class:`GpuStageRunner` runs the entrypoint as a
subprocess of the Dagster run (the local profile) that dies with the run's process, even a kill -9
of it; :class:`BatchStageRunner` submits it as AWS Batch jobs (the cloud profiles). Which one a deployment gets is decided where the Definitions are built
(:func:`odins_ravne_assets.definitions.build_definitions`), never inside a run. Either way the asset
gets the stage's logs live and its figures back as Pipes custom messages.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile

from dagster import (
    ConfigurableResource,
    Failure,
    PipesTempFileContextInjector,
    PipesTempFileMessageReader,
    open_pipes_session,
)

from resources.batch_pipes import PipesBatchClientResource
from resources.cost import CostResource
from resources.stage_plan import run_priority, run_stage_on_batch

ENTRYPOINT = ["-m", "gpu_ops.entrypoint"]
PR_SET_PDEATHSIG = 1  # linux/prctl.h
TERMINATION_TIMEOUT_S = 20  # what a stage gets to stop after SIGINT before it is killed


class GpuStageRunner(ConfigurableResource):
    """GPU stages as local subprocesses; ``python``: the interpreter (default: the one running Dagster)."""

    python: str | None = None

    def run(self, context, *, stage: str, camera_id: str, pipeline, extras: dict | None = None) -> dict:
        """Run one stage of one camera; returns its figures (shards merged) for the asset's metadata."""
        payload = {
            "stage": stage,
            "camera_id": camera_id,
            "input_root": pipeline.input.root,
            "output_root": pipeline.output.root,
            "profile": pipeline.settings.to_dict(),
            **(extras or {}),
        }
        return stage_figures(self.launch(context, pipeline=pipeline, payload=payload))

    def launch(self, context, *, pipeline, payload: dict) -> list:
        """Start the stage with ``payload`` as its Pipes extras; returns its Pipes custom messages."""
        return run_subprocess(context, [self.python or sys.executable, *ENTRYPOINT], payload)


class BatchStageRunner(GpuStageRunner):
    """GPU stages as AWS Batch jobs, planned (shards, budget guard, cost records) by :mod:`resources.stage_plan`."""

    batch: PipesBatchClientResource
    cost: CostResource

    def launch(self, context, *, pipeline, payload: dict) -> list:
        output = pipeline.output
        # Without a configured bucket the Pipes messages go next to an s3:// output.
        output_bucket = output.root[len("s3://") :].split("/", 1)[0] if output.is_s3 else None
        client = self.batch.get_client(output_bucket, priority=run_priority(context, pipeline.settings))
        return run_stage_on_batch(context, profile=pipeline.settings, extras=payload, output=output, client=client, costs=self.cost)


def run_subprocess(context, command: list[str], extras: dict) -> list:
    """Run ``command`` in a Pipes session (what PipesSubprocessClient does) as a child that cannot
    outlive this process: a detector left running after its run died holds the CPU or GPU and writes
    into a camera another run now owns. An interrupted run (Ctrl-C, SIGTERM) gives it SIGINT and
    ``TERMINATION_TIMEOUT_S`` to stop; any other way out of here kills it. Returns its custom messages."""
    with open_pipes_session(
        context=context, context_injector=PipesTempFileContextInjector(), message_reader=PipesTempFileMessageReader(), extras=extras
    ) as session:
        output = tempfile.TemporaryFile()
        child = subprocess.Popen(
            command, env={**os.environ, **session.get_bootstrap_env_vars()}, preexec_fn=_die_with(os.getpid()),
            stdout=output, stderr=subprocess.STDOUT,
        )
        try:
            code = child.wait()
            output.seek(0)
            printed = output.read().decode(errors="replace").strip()
            if code != 0:
                # The stage's traceback goes to the run's log; the failure itself is its last line.
                context.log.error(f"the GPU stage's output:\n{printed}")
                last = printed.splitlines()[-1] if printed else "no output"
                raise Failure(f"the GPU stage failed with exit code {code}: {last}")
            if printed:
                context.log.debug(printed)
        except BaseException:
            if child.poll() is None:
                context.log.info("run interrupted: stopping the GPU stage")
                child.send_signal(signal.SIGINT)
                try:
                    child.wait(timeout=TERMINATION_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            raise
        finally:
            output.close()
        return list(session.get_custom_messages())


def _die_with(parent: int):
    """A preexec_fn that makes the child get SIGKILL when ``parent`` dies (Linux PR_SET_PDEATHSIG;
    elsewhere nothing). The signal follows the forking thread, which here is the step's own, alive
    until the child has exited."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not in the child

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the prctl took effect
            os._exit(1)

    return preexec


def stage_figures(messages: list) -> dict:
    """The stage's figures from its jobs' messages, with the Batch jobs' count, cost and console link."""
    stats = _merge([m["stats"] for m in messages if isinstance(m, dict) and "stats" in m])
    for message in messages:
        if isinstance(message, dict) and "batch" in message:
            batch = message["batch"]
            stats["batch_jobs"] = len(batch.get("jobs", []))
            stats.update({f"cost_{k}": v for k, v in (batch.get("cost") or {}).items() if isinstance(v, (int, float))})
            links = [j.get("console_url") for j in batch.get("jobs", []) if j.get("console_url")]
            if links:
                stats["batch_console"] = links[0]
    return stats


def _merge(stats: list[dict]) -> dict:
    """Figures of several jobs (shards) of one stage as one set: counts add, times take the max."""
    if not stats:
        return {}
    merged: dict = {}
    for figures in stats:
        for key, value in figures.items():
            if key in ("seconds", "cold_start_s", "media_total", "media_skipped"):  # same in every shard
                merged[key] = max(merged.get(key, 0.0), value)
            elif key == "frames_per_s":
                continue
            else:
                merged[key] = merged.get(key, 0) + value
    if merged.get("seconds"):
        merged["frames_per_s"] = round(merged.get("frames", 0) / merged["seconds"], 3)
    return merged
