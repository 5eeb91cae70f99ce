import re

import pyarrow as pa
from hugin_tables import Shots

from gpu_ops import schemas
from odins_ravne_assets.hugin.clusters import cluster_locations, camera_locations
from odins_ravne_assets.hugin.deployments import build_deployments, trap_nights
from odins_ravne_assets.hugin.events import condense_events
from odins_ravne_assets.hugin.reports import write_reports
from odins_ravne_assets.hugin.sites import site_summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def small_project():
    a, b = Shots("cam-a"), Shots("cam-b")
    for day in range(3):
        a.shot(day * 1440, ("elk", 0.9), ("elk", 0.8), lat=62.0, lon=10.0)
        a.shot(day * 1440 + 600, ("red fox", 0.7), lat=62.0, lon=10.0)
        b.shot(day * 1440 + 300, ("lynx", 0.8), lat=62.001, lon=10.001)
    b.shot(5000, status="failed")
    b.media[-1]["failure"] = "empty file: 0 bytes"
    parts = [s.tables() for s in (a, b)]
    return (pa.concat_tables([p[i] for p in parts]) for i in range(3))


def test_project_and_camera_reports_link_real_plots(tmp_path):
    media, detections, labels = small_project()
    events = condense_events(labels, detections, window_minutes=10, min_confidence=0.3, media=media)
    clustering = cluster_locations(camera_locations(media))
    sites, species = site_summary(events, clustering.table, trap_nights(build_deployments(media), media))
    reports = write_reports(tmp_path, events=events, clusters=clustering.table, media=media,
                            sites=sites, site_species=species)
    assert sorted(reports) == ["cam-a", "cam-b", "project"]
    for report in reports.values():
        page = report.html_path.read_text()
        images = re.findall(r"<img src='([^']+)'", page)
        assert len(images) >= 3
        for name in images:
            assert (report.html_path.parent / name).read_bytes().startswith(PNG_MAGIC)
        assert all(p.exists() for p in report.files)
    project = reports["project"]
    assert "sites.png" in {p.name for p in project.files}
    page = project.html_path.read_text()
    assert "<i>Sci elk</i>" in page and "cameras/cam-a/index.html" in page and "empty file (1)" in page
    assert "| elk | 3 | 2 | 1 |" in project.markdown
    assert "10 media, 1 failed" in project.markdown
    camera_page = reports["cam-b"].html_path.read_text()
    assert "lynx" in camera_page and "elk" not in camera_page and "../../index.html" in camera_page


def test_reports_of_an_empty_project_still_render(tmp_path):
    reports = write_reports(tmp_path, events=schemas.empty(schemas.EVENTS), clusters=schemas.empty(schemas.CLUSTERS),
                            media=schemas.empty(schemas.MEDIA))
    assert list(reports) == ["project"]
    assert "Nothing yet." in reports["project"].html_path.read_text()
    assert (tmp_path / "species.png").read_bytes().startswith(PNG_MAGIC)
