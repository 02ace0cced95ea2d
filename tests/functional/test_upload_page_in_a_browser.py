"""End to end in a real browser: Playwright drives Debian's Chromium against the real app and Triton.

Upload the sample scene, see the overlay and the plume table, download the GeoJSON, open the
history page and reopen the result from it; a scene over the synchronous limit shows a progress
bar and then its result. UPDATE_SCREENSHOT=1 rewrites docs/screenshot-result.png.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]


def _need(what_missing: str):
    reason = f"{what_missing}: run scripts/ci_services.sh (make test does)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _serve(triton, data, **config):
    from waitress import create_server

    from webapp.app import create_app

    app = create_app({"TRITON_URL": triton.http_url, "DATA_DIR": str(data), "DATABASE_URL": None, **config})
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture(scope="module")
def live_app(triton, tmp_path_factory):
    """The app under waitress on a free port, with the default settings."""
    server, thread = _serve(triton, tmp_path_factory.mktemp("browser-var"))
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def live_app_small_sync(triton, tmp_path_factory):
    """As live_app, with SYNC_MAX_PIXELS 300 x 300: the 384 x 384 scene becomes a background job."""
    server, thread = _serve(triton, tmp_path_factory.mktemp("browser-var-jobs"), SYNC_MAX_PIXELS=300 * 300)
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    if not CHROMIUM.exists():
        _need(f"Chromium is not installed ({CHROMIUM})")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright is not installed (pip install -e '.[test]')")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=ARGS, headless=True, accept_downloads=True,
            viewport={"width": 1280, "height": 1000})
        context.set_default_timeout(30_000)
        yield context
        context.close()


@pytest.fixture
def page(browser_context):
    page = browser_context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    page.close()
    assert not errors, f"JavaScript errors: {errors}"


def test_upload_see_download_and_reopen_from_history(page, live_app, tmp_path):
    sample = EXAMPLES / "sample_scene.tif"
    if not sample.exists():
        pytest.fail("examples/sample_scene.tif is missing")
    page.goto(live_app + "/")
    page.set_input_files("#file", str(sample))
    page.click("#submit")
    page.wait_for_selector("#result")

    # The overlays are real, decoded images.
    for sel in ("#overlay-rgb", "#overlay-swir"):
        size = page.eval_on_selector(sel, "img => [img.complete, img.naturalWidth, img.naturalHeight]")
        assert size[0] and size[1] >= 256 and size[2] >= 256, (sel, size)
    assert int(page.inner_text("#plume-pixels")) > 0
    rows = page.locator("#plumes tbody tr.plume")
    assert rows.count() >= 1
    lon = float(rows.first.locator(".source-lon").inner_text())
    lat = float(rows.first.locator(".source-lat").inner_text())
    assert -180 <= lon <= 180 and -90 <= lat <= 90
    assert float(rows.first.locator(".area").inner_text()) > 0
    result_id = page.get_attribute("#result", "data-result-id")

    if os.environ.get("UPDATE_SCREENSHOT"):
        page.screenshot(path=str(ROOT / "docs" / "screenshot-result.png"), full_page=True)
    else:
        page.screenshot(path=str(tmp_path / "result.png"), full_page=True)

    # Download the GeoJSON.
    with page.expect_download() as info:
        page.click("#download-geojson")
    download = info.value
    assert download.suggested_filename == "sample_scene_plumes.geojson"
    target = tmp_path / download.suggested_filename
    download.save_as(str(target))
    fc = json.loads(target.read_text())
    assert fc["type"] == "FeatureCollection"
    plumes = [f for f in fc["features"] if f["properties"]["kind"] == "plume"]
    assert len(plumes) == rows.count()

    # History lists it; reopening shows the same result.
    page.click("#nav-history")
    page.wait_for_selector("#history")
    row = page.locator(f'tr.history-row[data-result-id="{result_id}"]')
    assert row.count() == 1 and "sample_scene.tif" in row.inner_text()
    row.locator("a").click()
    page.wait_for_selector("#result")
    assert page.get_attribute("#result", "data-result-id") == result_id
    assert page.url.endswith(f"/results/{result_id}")
    assert page.locator("#plumes tbody tr.plume").count() == rows.count()


def test_large_scene_shows_progress_then_its_result(page, live_app_small_sync, scenes):
    page.goto(live_app_small_sync + "/")
    page.set_input_files("#file", str(scenes["strong"]))  # 384 x 384 > the 300 x 300 limit here
    page.click("#submit")
    page.wait_for_url("**/jobs/*")
    assert page.locator("#job-progress").count() == 1
    page.wait_for_url("**/results/*", timeout=60_000)
    page.wait_for_selector("#result")
    assert int(page.inner_text("#plume-pixels")) > 0


def test_bad_upload_shows_the_message(page, live_app, tmp_path):
    bad = tmp_path / "notes.tif"
    bad.write_text("not a raster")
    page.goto(live_app + "/")
    page.set_input_files("#file", str(bad))
    page.click("#submit")
    page.wait_for_selector("#error")
    assert "not a GeoTIFF" in page.inner_text("#error")
    assert "Traceback" not in page.content()
