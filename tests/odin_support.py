"""Shared pieces of the Odin tests: a real moto server and a Batch set-up on it.

moto answers the S3, SQS, Batch, EC2, CloudFormation, Budgets and CloudWatch APIs over HTTP, so the
code under test talks to it exactly as it would to AWS (through ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import json
import os
import urllib.request

import boto3
import pytest

REGION = "eu-north-1"
SPOT_QUEUE = "odins-ravne-gpu-spot"
ONDEMAND_QUEUE = "odins-ravne-gpu-ondemand"
JOB_DEFINITION = "odins-ravne-gpu"


@pytest.fixture(scope="session")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(
        AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION
    )
    yield url
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def moto_reset(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")).close()


def moto_batch_without_docker(url: str) -> None:
    body = json.dumps({"batch": {"use_docker": False}}).encode()
    request = urllib.request.Request(f"{url}/moto-api/config", data=body, method="POST", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request).close()


def client(service: str):
    return boto3.client(service, region_name=REGION)


def make_batch(retry: dict | None = None) -> None:
    """Two queues (spot first, on-demand fallback) and the GPU job definition, as the stack makes them."""
    iam = client("iam")
    role = iam.create_role(RoleName="odins-ravne-batch-service", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    batch = client("batch")
    queues = {}
    for name, env in ((SPOT_QUEUE, "odins-ravne-spot"), (ONDEMAND_QUEUE, "odins-ravne-ondemand")):
        ce = batch.create_compute_environment(computeEnvironmentName=env, type="UNMANAGED", state="ENABLED", serviceRole=role)
        queues[name] = batch.create_job_queue(
            jobQueueName=name, state="ENABLED", priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce["computeEnvironmentArn"]}],
        )
    kwargs = {"retryStrategy": retry} if retry else {}
    batch.register_job_definition(
        jobDefinitionName=JOB_DEFINITION,
        type="container",
        containerProperties={
            "image": "odins-ravne/gpu:test",
            "command": ["python", "-m", "gpu_ops.entrypoint"],
            "resourceRequirements": [{"type": "VCPU", "value": "4"}, {"type": "MEMORY", "value": "16384"}, {"type": "GPU", "value": "1"}],
        },
        **kwargs,
    )
