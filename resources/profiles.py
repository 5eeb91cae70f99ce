"""Profiles: the named sets of knobs in ``profiles/*.yaml``.

A profile is YAML whose shape is :class:`gpu_ops.settings.Profile`; this module finds the file by
name or path and hands its mapping to :func:`gpu_ops.settings.parse_profile`, which validates it.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from gpu_ops.settings import Profile, ProfileError, parse_profile

PROFILE_DIR = Path(__file__).resolve().parent.parent / "profiles"


def load_profile(name_or_path: str | None = None) -> Profile:
    """Load a profile by name (``profiles/<name>.yaml``) or path; default: $ODINS_RAVNE_PROFILE or local."""
    name_or_path = name_or_path or os.environ.get("ODINS_RAVNE_PROFILE") or "local"
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        raise ProfileError(f"profile '{name_or_path}' not found; known profiles: {', '.join(known)}")
    with path.open() as handle:
        data = yaml.safe_load(handle) or {}
    return parse_profile(data, source=str(path))
