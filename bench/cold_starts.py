"""Cold starts paid per job, not per camera: ``process`` on Batch with packing off, then on, in one run.

Many small cameras against a moto server (S3 and the Batch API) with the local Batch runner
(ODINS_RAVNE_BATCH_RUNNER=local: each Batch job is a ``gpu_ops.entrypoint`` process on this machine,
so its cold start is the real one of loading the stack and the model). Each mode gets a fresh moto
state, bucket and Dagster instance; the figures are read from the run's costs table (one row per job
and camera, a packed job's cold start split over its cameras and summed back here).

    .venv/bin/python -m bench.cold_starts --cameras 50 --images 20
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import urllib.request
from collections import defaultdict
from pathlib import Path

import boto3
import yaml

ROOT = Path(__file__).resolve().parents[1]
REGION = "eu-north-1"
BUCKET = "odins-ravne-cold-starts"


def _images(n: int, camera: int):
    """``n`` small JPEGs of a real photograph, each different by content (Stage 1 deduplicates by hash)."""
    import ultralytics
    from PIL import Image, ImageDraw

    base = Image.open(Path(ultralytics.__file__).parent / "assets" / "bus.jpg").convert("RGB")
    base = base.resize((320, base.height * 320 // base.width))
    for index in range(n):
        image = base.copy()
        ImageDraw.Draw(image).rectangle([index * 3 % 300, camera * 5 % 400, index * 3 % 300 + 8, camera * 5 % 400 + 8], fill=(index * 7 % 256, camera * 11 % 256, 0))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        yield buffer.getvalue()


def _make_stack() -> None:
    """The queues, job definition and bucket the shipped cloud profile names, as the stack makes them."""
    iam, batch = boto3.client("iam", region_name=REGION), boto3.client("batch", region_name=REGION)
    role = iam.create_role(RoleName="odins-ravne-batch-service", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    for queue, env in (("odins-ravne-gpu-spot", "odins-ravne-spot"), ("odins-ravne-gpu-ondemand", "odins-ravne-ondemand")):
        ce = batch.create_compute_environment(computeEnvironmentName=env, type="UNMANAGED", state="ENABLED", serviceRole=role)
        batch.create_job_queue(jobQueueName=queue, state="ENABLED", priority=1,
                               computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce["computeEnvironmentArn"]}])
    batch.register_job_definition(jobDefinitionName="odins-ravne-gpu", type="container", containerProperties={
        "image": "odins-ravne/gpu:bench", "command": ["python", "-m", "gpu_ops.entrypoint"],
        "resourceRequirements": [{"type": "VCPU", "value": "4"}, {"type": "MEMORY", "value": "16384"}, {"type": "GPU", "value": "1"}],
    })
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})


def run_mode(endpoint: str, work: Path, *, cameras: int, images: int, pack: bool) -> dict:
    """One ``process`` of every camera; returns its jobs and cold-start seconds, by stage and in all."""
    from gpu_ops.storage import Storage
    from odins_ravne_assets.cli.process import process

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).close()
    _make_stack()
    s3 = boto3.client("s3", region_name=REGION)
    for camera in range(cameras):
        for index, data in enumerate(_images(images, camera)):
            s3.put_object(Bucket=BUCKET, Key=f"input/cam-{camera:03d}/IMG_{index:04d}.JPG", Body=data)
    profile = yaml.safe_load((ROOT / "profiles" / "cloud.yaml").read_text())
    profile["cloud"]["aws"]["pack_small_cameras"] = pack
    mode = "on" if pack else "off"
    profile_path = work / f"packing-{mode}.yaml"
    profile_path.write_text(yaml.safe_dump(profile))
    os.environ["DAGSTER_HOME"] = str(work / f"dagster-{mode}")
    code = process(f"s3://{BUCKET}/input", f"s3://{BUCKET}/output", profile=str(profile_path), quiet=True)
    if code != 0:
        raise SystemExit(f"process with packing {mode} exited {code}")
    costs = Storage(f"s3://{BUCKET}/output").read_parquet("costs").to_pylist()
    jobs: dict[str, dict] = {}
    for row in costs:
        job = jobs.setdefault(row["job_id"], {"stage": row["stage"], "cold": 0.0})
        job["cold"] += row["cold_start_seconds"] or 0.0
    figures = defaultdict(lambda: {"jobs": 0, "cold_start_s": 0.0})
    for job in jobs.values():
        for key in (job["stage"], "all"):
            figures[key]["jobs"] += 1
            figures[key]["cold_start_s"] += job["cold"]
    return dict(figures)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=50)
    parser.add_argument("--images", type=int, default=20)
    args = parser.parse_args(argv)

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log would bury the figures
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION=REGION, ODINS_RAVNE_BATCH_RUNNER="local")
    os.environ.pop("ODINS_RAVNE_BUCKET", None)  # the Pipes messages go to the output's bucket
    try:
        with tempfile.TemporaryDirectory() as tmp:
            before = run_mode(endpoint, Path(tmp), cameras=args.cameras, images=args.images, pack=False)
            after = run_mode(endpoint, Path(tmp), cameras=args.cameras, images=args.images, pack=True)
    finally:
        server.stop()
    print(f"\n{args.cameras} cameras x {args.images} images, local Batch runner on moto")
    print(f"{'stage':<10}{'jobs off':>10}{'jobs on':>10}{'cold s off':>12}{'cold s on':>12}{'ratio':>8}")
    for stage in ("detect", "classify", "all"):
        off, on = before.get(stage, {"jobs": 0, "cold_start_s": 0.0}), after.get(stage, {"jobs": 0, "cold_start_s": 0.0})
        ratio = off["cold_start_s"] / on["cold_start_s"] if on["cold_start_s"] else float("inf")
        print(f"{stage:<10}{off['jobs']:>10}{on['jobs']:>10}{off['cold_start_s']:>12.1f}{on['cold_start_s']:>12.1f}{ratio:>7.1f}x")


if __name__ == "__main__":
    main()
