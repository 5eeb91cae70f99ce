"""The pipeline resource: where a deployment's media comes from, where results go, which profile."""

from __future__ import annotations

from functools import cached_property

from dagster import ConfigurableResource

from gpu_ops.settings import Profile
from resources.profiles import load_profile
from gpu_ops.storage import Storage


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

    def _storage(self, root: str) -> Storage:
        s = self.settings.storage
        return Storage(root, endpoint_url=s.endpoint_url, region=s.region)

    @property
    def input(self) -> Storage:
        return self._storage(self.input_root)

    @property
    def output(self) -> Storage:
        return self._storage(self.output_root)

    def camera_input(self, camera_id: str) -> Storage:
        return self.input.child(camera_id)
