"""The sample data's report, opened in a real browser (headless Chromium through Selenium), shows the
animals: the best crop of each species and each event's crop are there and loaded; the labelled
contact sheet of a camera's ``detections`` materialization renders from its Dagster metadata.

Needs Debian's ``chromium`` and ``chromium-driver`` and ``selenium`` (the ``dev`` extra); skipped
where the browser is not installed. Screenshots are left in the test's tmp_path to look at.
"""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from gpu_ops import schemas
from gpu_ops.storage import Storage

pytestmark = pytest.mark.slow

CHROMEDRIVER = Path("/usr/bin/chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra")
if not CHROMEDRIVER.exists():
    pytest.skip("Chromium's driver is not installed (apt-get install chromium chromium-driver)", allow_module_level=True)

LOADED = "return [...document.querySelectorAll(arguments[0])].map(i => [i.complete && i.naturalWidth, i.alt])"


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,2000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def _full_page_screenshot(browser, path: Path) -> None:
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1200, min(height + 100, 6000))
    browser.save_screenshot(str(path))
    browser.set_window_size(1200, 2000)


def test_sample_report_shows_the_animals_in_a_browser(processed, browser, tmp_path):
    _, output = processed
    # Moved away from the output folder first: the report must not depend on where it was written.
    reports = shutil.copytree(output / "reports", tmp_path / "reports")
    browser.get((reports / "index.html").as_uri())
    gallery = browser.execute_script(LOADED, "img.animal")
    events = Storage(str(output)).read_parquet("events", empty=schemas.EVENTS).to_pylist()
    species = {e["species"] for e in events if e["category"] == "animal"}
    assert len(species) >= 8
    # Every species found in the sample data, each with its picture, each picture loaded.
    assert sorted(alt.split(", ")[0] for _, alt in gallery) == sorted(species)
    assert all(width > 0 for width, _ in gallery), gallery
    captions = browser.execute_script("return [...document.querySelectorAll('.gallery figcaption')].map(f => f.innerText)")
    assert len(captions) == len(gallery)
    for (_, alt), caption in zip(gallery, captions):
        name, when, camera, conf = alt.split(", ")
        assert caption.startswith(name) and when in caption and camera in caption and conf in caption
        assert re.fullmatch(r"cam-[a-z0-9-]+", camera) and re.fullmatch(r"conf 0\.\d\d", conf)
    _full_page_screenshot(browser, tmp_path / "report.png")

    camera = sorted(p.parent for p in (reports / "cameras").glob("*/index.html"))[0]
    browser.get((camera / "index.html").as_uri())
    pictured = browser.find_elements("css selector", "img.event")
    assert pictured
    for image in pictured:  # lazy: each loads once scrolled to
        browser.execute_script("arguments[0].scrollIntoView()", image)
    browser.execute_script("window.scrollTo(0, 0)")
    WAIT = "return [...document.querySelectorAll('img.event')].every(i => i.complete && i.naturalWidth > 0)"
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(lambda d: d.execute_script(WAIT))
    _full_page_screenshot(browser, tmp_path / "camera.png")


def test_detections_contact_sheet_renders_from_dagster_metadata(processed, browser, tmp_path):
    """The ``preview`` Markdown of the latest ``detections`` materialization, as the Dagster UI shows it."""
    event = DagsterInstance.get().get_latest_materialization_event(AssetKey("detections"))
    markdown = event.asset_materialization.metadata["preview"].value
    src = re.fullmatch(r"!\[[^\]]*\]\((data:image/png;base64,[A-Za-z0-9+/=]+)\)", markdown).group(1)
    png = base64.b64decode(src.split(",", 1)[1])
    page = tmp_path / "preview.html"
    page.write_text(f"<!doctype html><html><body style='margin:0'><img id='sheet' src='{src}'></body></html>")
    browser.get(page.as_uri())
    width, height = browser.execute_script("const i = document.getElementById('sheet'); return [i.naturalWidth, i.naturalHeight]")
    assert width > 0 and height > 0 and png.startswith(b"\x89PNG")
    assert width <= 3 * 240 + 2 * 4
    browser.save_screenshot(str(tmp_path / "preview.png"))
