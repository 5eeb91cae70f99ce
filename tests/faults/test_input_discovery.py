"""What is and is not input (issue 11, items 8 and 18): an output folder inside the input is never a
camera nor media; HEIC photos, hidden media files and dangling links are counted and named, not
skipped without a word; report.md links to its own folder; `query` reads SQL from a file or stdin.

Real folders, real ingest, a real DuckDB file and the CLI's own entry point.
"""

from __future__ import annotations

import io
import os

import duckdb

from gpu_ops import schemas
from gpu_ops.storage import Storage
from media_support import ASSETS, write_jpeg
from odins_ravne_assets.cli import main
from odins_ravne_assets.hugin.reports import write_project_report
from odins_ravne_assets.munin.ingest import build_manifest, camera_folders


def _photo(path, minute=0):
    return write_jpeg(ASSETS / "bus.jpg", path, when=f"2026:06:01 05:{minute:02d}:00", scale=0.2)


def test_an_output_folder_inside_the_input_is_not_a_camera(tmp_path):
    _photo(tmp_path / "in" / "cam-a" / "a.jpg")
    _photo(tmp_path / "in" / "results" / "crops" / "camera_id=cam-a" / "x.jpg")
    folders, excluded = camera_folders(Storage(str(tmp_path / "in")), Storage(str(tmp_path / "in" / "results")))
    assert (folders, excluded) == (["cam-a"], "results")
    # Elsewhere, the same folder is a camera like any other.
    assert camera_folders(Storage(str(tmp_path / "in")), Storage(str(tmp_path / "out"))) == (["cam-a", "results"], None)


def test_an_output_folder_inside_a_camera_folder_is_not_its_media(tmp_path):
    camera = tmp_path / "cam-a"
    _photo(camera / "a.jpg")
    _photo(camera / "out" / "crops" / "camera_id=cam-a" / "x.jpg")
    manifest, figures = build_manifest(Storage(str(camera)), "cam-a", Storage(str(camera / "out")))
    assert manifest.column("file_path").to_pylist() == ["a.jpg"] and figures["media"] == 1


def test_heic_hidden_and_dangling_files_are_counted_with_one_line_each(tmp_path):
    camera = tmp_path / "cam-h"
    _photo(camera / "a.jpg")
    (camera / "IMG_0002.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (camera / "IMG_0003.heif").write_bytes(b"\x00\x00\x00\x18ftypheif")
    _photo(camera / ".IMG_0004.JPG", 1)
    _photo(camera / ".Trashes" / "IMG_0005.JPG", 2)
    os.symlink(camera / "gone.jpg", camera / "IMG_0006.JPG")
    (camera / "NOTES.TXT").write_text("battery low")
    lines = []
    manifest, figures = build_manifest(Storage(str(camera)), "cam-h", Storage(str(tmp_path / "out")), warn=lines.append)
    assert manifest.column("file_path").to_pylist() == ["a.jpg"]
    assert {k: v for k, v in figures.items() if k.startswith("skipped_")} == {
        "skipped_heic": 2, "skipped_not_media": 1, "skipped_hidden": 2, "skipped_broken_links": 1}
    assert lines == [
        "camera cam-h: 2 HEIC/HEIF/AVIF photos are not processed: no decoder for them here; convert them to JPEG (e.g. 'IMG_0002.HEIC')",
        "camera cam-h: 2 hidden files (names starting with '.') with a media extension are not processed: rename them to include them "
        "(e.g. '.IMG_0004.JPG')",
        "camera cam-h: 1 links point to files that do not exist and are not processed (e.g. 'IMG_0006.JPG')",
    ]


def test_report_md_links_to_the_page_beside_it(tmp_path):
    report = write_project_report(tmp_path / "tmp-report", events=schemas.EVENTS.empty_table())
    text = (tmp_path / "tmp-report" / "report.md").read_text()
    assert "- report: [index.html](index.html)" in text and str(tmp_path) not in text
    assert report.markdown == text


def _stage3(tmp_path):
    db = tmp_path / "out" / "stage3" / "odins_ravne.duckdb"
    db.parent.mkdir(parents=True)
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE events AS SELECT 'red fox' AS species, 2 AS max_count")
    con.close()
    return tmp_path / "out"


QUOTED = "SELECT species, max_count\nFROM events\nWHERE species = 'red fox' -- the README's \"query 5\" kind\n"


def test_query_reads_sql_with_quotes_and_newlines_from_a_file(tmp_path, capsys):
    out = _stage3(tmp_path)
    (tmp_path / "q.sql").write_text(QUOTED)
    assert main(["query", "--file", str(tmp_path / "q.sql"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "(1 rows)"


def test_query_reads_sql_from_stdin(tmp_path, capsys, monkeypatch):
    out = _stage3(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(QUOTED))
    assert main(["query", "-", "--out", str(out)]) == 0
    assert "red fox" in capsys.readouterr().out


def test_query_needs_exactly_one_source_of_sql(tmp_path, capsys):
    out = _stage3(tmp_path)
    assert main(["query", "--out", str(out)]) == 2
    assert main(["query", "SELECT 1", "--file", "q.sql", "--out", str(out)]) == 2
    assert main(["query", "--file", str(tmp_path / "missing.sql"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == err[1] == "error: give the SQL as an argument, '-' to read it from stdin, or --file PATH (one of them)"
    assert err[2] == f"error: cannot read the SQL file {tmp_path / 'missing.sql'}: No such file or directory"
