"""boto3 clients for Odin (Batch, S3, SQS, EC2, CloudFormation, Budgets, CloudWatch, STS).

Every client honours ``AWS_ENDPOINT_URL`` (and boto3's per-service ``AWS_ENDPOINT_URL_<SERVICE>``),
so the whole cloud path runs against moto server or any S3-compatible endpoint. The region comes from
the argument, then ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, then the project's home region.

This module does not import Dagster.
"""

from __future__ import annotations

import os
from typing import Any

from gpu_ops.settings import HOME_REGION



def region_name(region: str | None = None) -> str:
    return region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or HOME_REGION


def aws_client(service: str, *, region: str | None = None, endpoint_url: str | None = None) -> Any:
    """A boto3 client; ``endpoint_url`` wins over the environment, which wins over AWS itself."""
    import boto3

    kwargs: dict[str, Any] = {"region_name": region_name(region)}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    # Without an explicit endpoint boto3 reads AWS_ENDPOINT_URL(_<SERVICE>) itself.
    return boto3.client(service, **kwargs)


def is_aws_endpoint(client: Any) -> bool:
    """True when the client talks to AWS itself rather than moto or another stand-in."""
    host = client.meta.endpoint_url or ""
    return host.endswith(".amazonaws.com") or ".amazonaws.com/" in host or ".amazonaws.com.cn" in host


def batch_job_console_url(region: str, job_id: str) -> str:
    return f"https://{region}.console.aws.amazon.com/batch/home?region={region}#jobs/ec2/detail/{job_id}"
