"""``odins-ravne process`` and ``odins-ravne demo``: every asset for the cameras of an input root.

``process`` registers the cameras it finds as partitions of a persistent Dagster instance
($DAGSTER_HOME, default ``~/.odins_ravne/dagster_home``) and materializes every asset for them in
process, so each run also shows up in the Dagster UI opened on the same instance. The profile picks
the Definitions (which runner the GPU stages use); the input and output roots are the runs' config.

Ctrl-C or SIGTERM stops the whole command, not just the camera it is on: the GPU stage gets SIGINT,
the command says where it stopped and exits 130 (SIGINT) or 143 (SIGTERM); what finished is
checkpointed, and the same command resumes it. A failed step prints one line (what failed and why),
not Dagster's traceback; a full or read-only output stops the command at the first camera.

On Batch every job pays a cold start (instance, image, model load), so many small cameras run one
by one would pay one per camera. Decision: with several cameras and ``cloud.aws.pack_small_cameras``
on (the default), ``process`` first materializes every camera's ``raw_images`` (its manifest), then
runs one Stage 1 *pre-pass* (:func:`stage1_prepass`) over the cameras with at most
``max_images_per_job`` pending media, packed into as few jobs as that cap allows
(:func:`resources.stage_plan.run_cameras_on_batch`: the same budget guard, right-sizing and cost
records as a camera's own run), holding each camera's lease. Its work is checkpointed by content hash
under each camera's ``_work/detect`` folder, so each camera's own run afterwards finds Stage 1 done and
launches no Stage 1 job. A pre-pass rather than one run over many partitions: the per-camera
partitions, leases, lineage and failure reporting stay exactly as they are, and a failed pre-pass costs
nothing but a warning (each camera's own run then does its remaining Stage 1 work itself).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

from odins_ravne_assets.cli.console import error, format_table

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_HOME = Path("~/.odins_ravne/dagster_home").expanduser()
# The bar is the progress display; Dagster's own console lines would tear it apart, and a failed step
# is reported as one line by the command itself (failure_lines), the traceback stays in the UI.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
# A failure of the output itself: every later camera would fail the same way.
OUTPUT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT}

SUMMARY_SQL = """
SELECT m.camera_id,
       count(*) AS media,
       count(*) FILTER (WHERE m.status = 'failed') AS failed,
       coalesce(max(d.detections), 0) AS detections,
       coalesce(max(e.events), 0) AS events,
       coalesce(max(e.species), '') AS species
FROM media m
LEFT JOIN (SELECT camera_id, count(*) AS detections FROM detections GROUP BY camera_id) d USING (camera_id)
LEFT JOIN (SELECT camera_id, count(*) AS events,
                  string_agg(DISTINCT species, ', ' ORDER BY species) AS species
           FROM events WHERE category <> 'blank' GROUP BY camera_id) e USING (camera_id)
GROUP BY m.camera_id ORDER BY m.camera_id
"""


def ensure_dagster_home() -> Path:
    """The Dagster instance folder, created with the project's dagster.yaml when new."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_HOME).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() and (REPO_ROOT / "dagster.yaml").exists():
        shutil.copyfile(REPO_ROOT / "dagster.yaml", config)
    os.environ["DAGSTER_HOME"] = str(home)  # picks the instance, not what a run does
    return home


def run_config(input_root: str, output_root: str, profile: str) -> dict:
    """The config of one CLI run: where the pipeline resource reads and writes, and quiet logs.

    A resource's run config replaces all of its bound config, so the profile is repeated here.
    """
    pipeline = {"input_root": str(input_root), "output_root": str(output_root), "profile": profile}
    return {**QUIET_LOGS, "resources": {"pipeline": {"config": pipeline}}}


def profile_name(profile: str | None) -> str:
    return profile or os.environ.get("ODINS_RAVNE_PROFILE") or "local"


def process(
    input_root: str, output_root: str, *, camera_ids: list[str] | None = None, profile: str | None = None, quiet: bool = False,
    tags: dict[str, str] | None = None,
) -> int:
    """Materialize every asset for the cameras under ``input_root``; returns the exit code.

    ``tags`` go on every run beside the CLI's own (``odins-ravne batch`` tags the run's priority).
    """
    from gpu_ops.storage import open_storage
    from resources.profiles import load_profile

    profile = profile_name(profile)
    settings = load_profile(profile)  # fail early on a bad profile, before any run starts
    problem = unreachable_by_batch(input_root, output_root) if settings.runner.type == "batch" else None
    problem = problem or unusable_roots(input_root, output_root)
    if problem:
        return error(problem)
    ensure_dagster_home()
    # Preview/beta notices of Dagster APIs are for developers, not for someone processing a camera.
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", category=UserWarning, message=".*(preview|beta|superseded).*")

    from dagster import DagsterInstance
    from tqdm import tqdm

    from gpu_ops.media import media_type_for
    from odins_ravne_assets.definitions import build_definitions
    from odins_ravne_assets.jobs import CAMERA_ASSETS, PROJECT_ASSETS
    from odins_ravne_assets.partitions import InvalidCameraId, split_valid, validate_camera_id
    from odins_ravne_assets.progress import set_progress_callback
    from resources.run_launcher import fail_orphaned_runs

    storage = open_storage(input_root, settings.storage)
    from odins_ravne_assets.munin.ingest import camera_folders

    folders, output_folder = camera_folders(storage, open_storage(output_root, settings.storage))
    if output_folder:
        print(f"skipping folder {output_folder!r}: it is the output folder (--out), not a camera", file=sys.stderr)
    root = None if storage.is_s3 else storage.local_path()
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and media_type_for(p.name)) if root and root.is_dir() else []
    if loose and not folders:
        # A single camera's folder given directly: its parent is the input root.
        parent, name = storage.local_path().parent, storage.local_path().name
        print(f"{storage.root} holds media but no camera folders: processing it as camera {name!r}", file=sys.stderr)
        return process(str(parent), output_root, camera_ids=[name], profile=profile, quiet=quiet, tags=tags)
    if loose:
        print(f"warning: {len(loose)} media files directly under {storage.root} are in no camera folder "
              f"and are not processed (e.g. {loose[0]!r}): put each camera's media in its own folder", file=sys.stderr)
    found, invalid = split_valid(folders)
    for name, reason in invalid.items():
        print(f"skipping folder {name!r}: {reason}", file=sys.stderr)
    if camera_ids:
        try:
            [validate_camera_id(c) for c in camera_ids]
        except InvalidCameraId as err:
            return error(str(err))
        missing = sorted(set(camera_ids) - set(found))
        if missing:
            return error(f"no camera folder {', '.join(missing)} under {storage.root}")
        found = [c for c in found if c in camera_ids]
    if not found and root is not None and not root.is_dir():
        return error(f"input folder {storage.root} does not exist")
    if not found:
        return error(f"no camera folders under {storage.root}: put each camera's media in its own folder")

    instance = DagsterInstance.get()
    orphans = fail_orphaned_runs(instance)
    if orphans:
        print(f"marked {len(orphans)} run(s) failed whose process had died (killed or crashed): "
              f"{', '.join(r[:8] for r in orphans)}", file=sys.stderr)
    known = set(instance.get_dynamic_partitions("cameras"))
    new = [c for c in found if c not in known]
    if new:
        instance.add_dynamic_partitions("cameras", new)
    defs = build_definitions(profile)
    camera_job = defs.resolve_job_def("camera_job")
    project_job = defs.resolve_job_def("project_job")

    steps = len(found) * len(CAMERA_ASSETS) + len(PROJECT_ASSETS)
    bar = tqdm(total=steps, unit="step", disable=quiet, dynamic_ncols=True)
    failed_steps: list[str] = []

    def on_step(step_key: str, ok: bool) -> None:
        bar.update(1)
        if not ok:
            failed_steps.append(step_key)

    set_progress_callback(on_step)
    started = time.perf_counter()
    failed_cameras, finished = [], []
    config = run_config(input_root, output_root, profile)
    tags = {**(tags or {}), "odins-ravne/cli": "process"}
    project = current = None
    with stop_on_signal() as stopped_by:
        try:
            if settings.runner.type == "batch" and settings.cloud.aws.pack_small_cameras and len(found) > 1:
                set_progress_callback(None)  # the pre-pass's steps are not the bar's
                bar.set_description(f"packing Stage 1 of {len(found)} cameras")
                for line in pack_stage1(camera_job, found, instance=instance, config=config, tags=tags, stopped_by=stopped_by):
                    bar.write(line, file=sys.stderr)
                set_progress_callback(on_step)
            for current in found:
                if stopped_by():
                    break
                bar.set_description(f"camera {current}")
                result = camera_job.execute_in_process(
                    partition_key=current, instance=instance, raise_on_error=False, run_config=config, tags=tags
                )
                if stopped_by():
                    break
                finished.append(current)
                if not result.success:
                    failed_cameras.append(current)
                    lines = failure_lines(result)
                    unwritable = [line for line in lines if output_errno(line) in OUTPUT_ERRNOS]
                    if unwritable:
                        return error(f"the output {output_root} cannot be written (camera {current}, {unwritable[0]}): "
                                     "free space or choose another --out; finished work is checkpointed, run again to resume")
                    bar.write("\n".join(f"error: camera {current}: {line}" for line in lines), file=sys.stderr)
            else:
                current = "project (sites, Stage 3)"
                bar.set_description(current)
                project = project_job.execute_in_process(instance=instance, raise_on_error=False, run_config=config, tags=tags)
        except KeyboardInterrupt:
            pass  # between runs; stopped_by says which signal
        finally:
            set_progress_callback(None)
            bar.close()
        signum = stopped_by()
    if signum:
        name = signal.Signals(signum).name
        print(f"stopped by {name} during {'camera ' if current in found else ''}{current} "
              f"({len(finished)} of {len(found)} camera(s) finished); finished work is checkpointed: "
              "run the same command again to resume", file=sys.stderr)
        return 128 + signum
    elapsed = time.perf_counter() - started

    from resources.stage3 import query

    out = open_storage(output_root, settings.storage)
    if project.success:
        headers, rows = query(out, SUMMARY_SQL)
        print()
        print(format_table(headers, rows))
    print(f"\n{len(found)} camera(s) in {elapsed:.1f}s; results in {out.root}")
    print(f"query them: odins-ravne query \"SELECT * FROM events\" --out {out.root}")
    if not project.success:
        print("\n".join(f"error: project: {line}" for line in failure_lines(project)), file=sys.stderr)
    if failed_cameras or not project.success:
        print(f"error: runs failed for {', '.join(failed_cameras) or 'the project assets'} "
              f"(steps: {', '.join(failed_steps)}); open the Dagster UI for the logs", file=sys.stderr)
        return 1
    return 0


def pack_stage1(camera_job, cameras: list[str], *, instance, config: dict, tags: dict, stopped_by) -> list[str]:
    """Every camera's manifest, then one packed Stage 1 pre-pass over the small ones; returns warning lines.

    A camera whose manifest fails is left to its own run, which reports it; so is a failed pre-pass.
    """
    from dagster import AssetKey, GraphDefinition

    manifests = []
    for camera_id in cameras:
        result = camera_job.execute_in_process(
            partition_key=camera_id, instance=instance, raise_on_error=False, run_config=config, tags=tags,
            asset_selection=[AssetKey("raw_images")],
        )
        if stopped_by():
            return []
        if result.success:
            manifests.append(camera_id)
    if len(manifests) < 2:
        return []
    graph = GraphDefinition(name="stage1_prepass", node_defs=[_stage1_prepass_op()])
    prepass = graph.to_job(resource_defs=camera_job.resource_defs, tags=tags)
    result = prepass.execute_in_process(
        instance=instance, raise_on_error=False, tags=tags,
        run_config={**config, "ops": {"stage1_prepass": {"config": {"camera_ids": manifests}}}},
    )
    if result.success or stopped_by():
        return []
    return [f"warning: packed Stage 1 of {len(manifests)} cameras: {line}; each camera's own run does its Stage 1 instead"
            for line in failure_lines(result)]


def _stage1_prepass_op():
    """The pre-pass as a Dagster op (the Batch Pipes client needs a run's context); built on first use."""
    from dagster import op

    from resources.lease import camera_lease, holder_name
    from resources.stage_plan import pending_detect_keys, run_cameras_on_batch, run_priority

    # Untyped: the module's postponed annotations could not be resolved for names imported here.
    @op(name="stage1_prepass", config_schema={"camera_ids": [str]}, required_resource_keys={"pipeline", "gpu_runner"})
    def prepass(context):
        """Stage 1 of the cameras with at most ``max_images_per_job`` pending media, packed; a bigger camera's own run shards it."""
        pipeline, runner = context.resources.pipeline, context.resources.gpu_runner
        output, profile = pipeline.output, pipeline.settings
        cap = profile.pipeline.stage1.max_images_per_job
        with contextlib.ExitStack() as leases:
            small = []
            for camera_id in sorted(context.op_config["camera_ids"]):  # one order for every pre-pass: two never deadlock
                leases.enter_context(camera_lease(output, camera_id, holder=holder_name(context.run_id), log=context.log.warning))
                if 0 < len(pending_detect_keys(output, profile, camera_id)) <= cap:
                    small.append(camera_id)
            if len(small) < 2:
                context.log.info(f"[batch] {len(small)} small camera(s) with media to detect: nothing to pack")
                return
            bucket = output.root[len("s3://") :].split("/", 1)[0] if output.is_s3 else None
            client = runner.batch.get_client(bucket, priority=run_priority(context, profile))
            extras = {"stage": "detect", "input_root": pipeline.input.root, "output_root": output.root, "profile": profile.to_dict()}
            run_cameras_on_batch(context, profile=profile, extras=extras, camera_ids=small, output=output, client=client, costs=runner.cost)

    return prepass


def unreachable_by_batch(input_root: str, output_root: str) -> str | None:
    """Why a Batch job could not reach these roots (it sees S3 only), in one line; None when it can.

    Decision: ``process`` refuses rather than uploading on its own; staging is ``odins-ravne batch``,
    which says what it uploads and keeps what it staged for the next run.
    """
    from gpu_ops.storage import is_s3

    if not is_s3(input_root):
        return (f"the input {input_root} is on this machine, and a Batch job reads only S3: stage and process it in one "
                f"command with odins-ravne batch {input_root} --out s3://BUCKET/PREFIX, or give an s3:// input")
    if not is_s3(output_root):
        return f"the output {output_root} is on this machine, and a Batch job writes only to S3: give --out s3://BUCKET/PREFIX"
    return None


def unusable_roots(input_root: str, output_root: str) -> str | None:
    """What is wrong with the input or output roots, in one line, before any run starts."""
    from gpu_ops.storage import is_s3

    if not is_s3(input_root) and Path(input_root).expanduser().is_file():
        return (f"{input_root} is a file: give the folder that holds the camera folders "
                "(or one camera's folder), e.g. odins-ravne process cards/ --out results/")
    if is_s3(output_root):
        return None
    out = Path(output_root).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        return f"cannot write to the output {output_root}: {err.strerror}: choose a writable folder with free space (--out)"
    return None


@contextlib.contextmanager
def stop_on_signal():
    """SIGTERM stops the command as Ctrl-C does; yields a function that says which of the two arrived.

    Inside a run Dagster owns both signals (it turns them into an interrupt of the step, the run
    fails and execute_in_process returns), so the signal number is read from a wakeup fd, which the
    interpreter writes whatever Python handler is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: 0
        return
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    seen: list[int] = []

    def stopped_by() -> int:
        with contextlib.suppress(BlockingIOError):
            seen.extend(b for b in os.read(read_end, 64) if b in (signal.SIGINT, signal.SIGTERM))
        return seen[0] if seen else 0

    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    previous_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield stopped_by
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.set_wakeup_fd(previous_fd)
        os.close(read_end)
        os.close(write_end)


def failure_lines(result) -> list[str]:
    """One line per failed step of a run (step: error class: message), the run's own error if none."""
    lines = [f"{e.step_key} failed: {_first_line(e.step_failure_data.error)}" for e in result.all_events if e.is_step_failure]
    if not lines:
        lines = [f"failed: {_first_line(e.job_failure_data.error)}" for e in result.all_events
                 if e.is_run_failure and e.job_failure_data and e.job_failure_data.error]
    return lines or ["failed (open the Dagster UI for the logs)"]


def _first_line(error) -> str:
    """The user's error under Dagster's wrappers, as ``Class: first line of the message``."""
    while error.cause is not None and error.cls_name.startswith("Dagster"):
        error = error.cause
    text = error.message.strip().split(": ", 1)[-1].splitlines()
    return f"{error.cls_name}: {text[0] if text else ''}"


def output_errno(line: str) -> int | None:
    found = re.search(r"\[Errno (\d+)\]", line)
    return int(found.group(1)) if found else None


def demo(sample_dir: str, output_root: str) -> int:
    from gpu_ops.weights import fetch_default_weights
    from odins_ravne_assets.sample_data import build_sample_data

    print("fetching the default detector weights (once) ...")
    fetch_default_weights()
    print(f"building sample cameras in {sample_dir} ...")
    build_sample_data(Path(sample_dir))
    code = process(sample_dir, output_root)
    if code == 0:
        print("\nopen the Dagster UI on these results: make dev  (then http://127.0.0.1:3000)")
    return code
