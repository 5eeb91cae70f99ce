"""The pipeline resource: where a deployment's media comes from, where results go, which profile."""

from __future__ import annotations

from functools import cached_property

from dagster import ConfigurableResource

from gpu_ops.settings import Profile
from resources.profiles import load_profile
from gpu_ops.storage import Storage, open_storage
from resources.regions import storage_settings_for


class PipelineResource(ConfigurableResource):
    """Bound with ``EnvVar``s in definitions: ODINS_RAVNE_INPUT, ODINS_RAVNE_OUTPUT, ODINS_RAVNE_PROFILE.

    ``input_root`` holds one top-level folder (or S3 prefix) per camera; ``output_root`` receives
    the Hive-partitioned tables, crops, checkpoints and the Stage 3 database.
    """

    input_root: str
    output_root: str
    profile: str = "local"

    @cached_property
    def settings(self) -> Profile:
        return load_profile(self.profile)

    # One Storage per root and resource: its boto3 client is made once, not per asset call, in the
    # region of the root's bucket (a deployment may have a bucket in several regions).
    @cached_property
    def input(self) -> Storage:
        return open_storage(self.input_root, storage_settings_for(self.input_root, self.settings.storage))

    @cached_property
    def output(self) -> Storage:
        return open_storage(self.output_root, storage_settings_for(self.output_root, self.settings.storage))

    def camera_input(self, camera_id: str) -> Storage:
        return self.input.child(camera_id)
