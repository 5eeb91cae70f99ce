"""Cameras are dynamic partitions: a camera is a top-level folder (or S3 prefix) of the input root."""

from __future__ import annotations

import re

from dagster import DynamicPartitionsDefinition

cameras = DynamicPartitionsDefinition(name="cameras")

_CAMERA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


class InvalidCameraId(ValueError):
    pass


def validate_camera_id(camera_id: str) -> str:
    """Return the id unchanged, or raise an error that says which characters are allowed."""
    if not _CAMERA_ID.match(camera_id or ""):
        raise InvalidCameraId(
            f"camera {camera_id!r} is not a valid partition key: use letters, digits, '-' and '_' "
            "(starting with a letter or digit, at most 128 characters); rename the camera folder"
        )
    return camera_id


def split_valid(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """Valid camera ids, and the invalid ones with the reason, from a list of folder names."""
    valid, invalid = [], {}
    for name in names:
        try:
            valid.append(validate_camera_id(name))
        except InvalidCameraId as err:
            invalid[name] = str(err)
    return valid, invalid
