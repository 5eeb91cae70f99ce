"""Shared fixtures: the sample cameras of `make demo` processed once and a private Dagster instance per
test session. Helpers live in support modules beside this file (media_support, odin_support, ...)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def dagster_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copyfile(Path(__file__).resolve().parent.parent / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def sample_cards(tmp_path_factory):
    """The sample cameras `make demo` processes: (folder, summary with the truth for every file)."""
    from odins_ravne_assets.sample_data import build_sample_data

    root = tmp_path_factory.mktemp("sample_data")
    return root, build_sample_data(root)


@pytest.fixture(scope="session")
def processed(sample_cards, dagster_home, tmp_path_factory):
    """The sample cameras processed once through the CLI (all assets, real model): (input, output)."""
    from odins_ravne_assets.cli import main

    output = tmp_path_factory.mktemp("output")
    assert main(["process", str(sample_cards[0]), "--out", str(output), "--quiet"]) == 0
    return sample_cards[0], output
