"""Every output file is readable by the group and others under a 022 umask (issue 11, item 15).

Before, tables, crops and reports were written 0600 (``mkstemp`` under the atomic writes) while the
DuckDB database was 0644: a colleague or a web server could open the database but not the Parquet
its views read. A real ``process`` of one camera (real model, real Dagster instance) and both
exports under umask 022, then every file they wrote is checked, whoever wrote it.
"""

from __future__ import annotations

import os
import stat

import pytest

from media_support import ASSETS, write_jpeg


@pytest.mark.slow
def test_every_output_file_is_readable_by_group_and_others(tmp_path, dagster_home):
    from odins_ravne_assets.cli import main

    cards = tmp_path / "cards"
    for i, name in enumerate(("bus.jpg", "zidane.jpg")):
        write_jpeg(ASSETS / name, cards / "cam-perm" / f"IMG_{i:04d}.JPG", when=f"2024:05:01 10:0{i}:00", scale=0.5)
    output = tmp_path / "out"
    previous = os.umask(0o022)
    try:
        assert main(["process", str(cards), "--out", str(output), "--quiet"]) == 0
        assert main(["export", "camtrap-dp", str(tmp_path / "package"), "--out", str(output)]) == 0
        assert main(["export", "megadetector", str(tmp_path / "md.json"), "--out", str(output)]) == 0
    finally:
        os.umask(previous)
    files = [p for p in output.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".parquet", ".jpg", ".md", ".duckdb"} <= kinds, kinds  # tables, crops, reports, database
    files += [*(tmp_path / "package").rglob("*.*"), tmp_path / "md.json"]  # the exports
    assert {".csv", ".json"} <= {p.suffix for p in files}
    unreadable = sorted(f"{oct(stat.S_IMODE(p.stat().st_mode))} {p.relative_to(output)}" for p in files
                        if stat.S_IMODE(p.stat().st_mode) & 0o044 != 0o044)
    assert unreadable == []
