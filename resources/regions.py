"""Which region a bucket lives in, so a run's Batch jobs and storage go where its data is.

A deployment may have a stack in several regions (``odins-ravne infra deploy --region R``), each with
its own bucket and queues. A run works in the region of its output bucket (S3 GetBucketLocation):
its jobs are submitted to that region's queues, their Pipes messages and the storage clients use
that region, so the data does not cross regions and the job role (which reaches its own region's
bucket only) can read and write it.

Decision: a profile that names its own ``storage.endpoint_url`` (an S3-compatible store, not AWS)
keeps its ``storage.region``: such a store's location says nothing about where Batch runs. A bucket
whose location cannot be read (no permission) is taken to be in ``storage.region``, as before.
An input bucket in another region than the output is read from there (S3 answers any region).

This module does not import Dagster.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import urlparse

import botocore.exceptions

from gpu_ops.settings import StorageSettings
from gpu_ops.storage import is_s3
from resources.aws import aws_client


def bucket_region(bucket: str, settings: StorageSettings) -> str:
    """The region of ``bucket``; ``settings.region`` for a non-AWS endpoint or an unreadable location."""
    if settings.endpoint_url:
        return settings.region
    try:
        location = aws_client("s3", region=settings.region).get_bucket_location(Bucket=bucket).get("LocationConstraint")
    except botocore.exceptions.ClientError:
        return settings.region
    # S3 reports us-east-1 as no constraint and the oldest eu-west-1 buckets as "EU".
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)


def root_bucket(root: str) -> str | None:
    """The bucket of an ``s3://`` root; None for a local folder."""
    return urlparse(str(root)).netloc if is_s3(str(root)) else None


def storage_settings_for(root: str, settings: StorageSettings) -> StorageSettings:
    """``settings`` with the region of ``root``'s bucket (unchanged for a local root)."""
    bucket = root_bucket(root)
    if bucket is None:
        return settings
    region = bucket_region(bucket, settings)
    return settings if region == settings.region else dataclasses.replace(settings, region=region)
