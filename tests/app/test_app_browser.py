"""The web app in a real browser: Playwright drives Debian's chromium against the real pipeline.

One app launch (in-thread, on a free 127.0.0.1 port) is shared by the module. The photo comes
from the shared IM2GPS3k dev split; the app recognises it by file name, leaves its photographer
out of the gallery and scores the answer against its ground truth.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest

from geodemo.paths import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
DEV_PHOTO = "154004633_75094bab75_56_90833046@N00.jpg"  # Minneapolis; far from the gallery's neighbours
RESULT_TIMEOUT_MS = 180_000  # cold start: gallery features, DeepLab, DBSCAN, Tesseract
SCREENSHOT_DIR = REPO_ROOT / ".cache" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Debian chromium not found at {CHROMIUM} (apt install chromium)"),
]




@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    user_dir = tempfile.mkdtemp(prefix="geodemo-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            user_dir, executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 4200},  # tall: off-screen iframes are not painted
        )
        yield context
        context.close()
    shutil.rmtree(user_dir, ignore_errors=True)


def _open(browser, url: str):
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#locate", timeout=30_000)
    return page


def _upload(page, path: Path, preview: bool = True) -> None:
    page.locator("#photo input[type=file]").set_input_files(str(path))
    if preview:  # the upload request has finished once the photo's preview shows
        page.wait_for_selector("#photo img", timeout=30_000)
    else:  # a file that is no image shows no preview
        page.wait_for_timeout(1500)


def test_locate_a_dev_photo_shows_every_stage(app_url, browser, shared):
    from playwright.sync_api import expect  # assertions that wait for the maps' scripts

    expect.set_options(timeout=30_000)  # map iframes load Leaflet (~370 KB) and draw once laid out
    photo = shared / "data" / "im2gps3k-dev" / "images" / DEV_PHOTO
    page = _open(browser, app_url)
    _upload(page, photo)
    page.click("#locate")
    page.wait_for_selector("#error-line :text('Error')", timeout=RESULT_TIMEOUT_MS)

    # Segmentation overlay and class shares.
    assert page.locator("#overlay img").count() == 1
    assert page.locator("#overlay img").get_attribute("src")
    assert "sky" in page.locator("#shares").inner_text() or page.locator("#shares").inner_text().strip()

    # Neighbour map with one marker per retrieved neighbour (offline preset: top-k 20).
    neighbours = page.frame_locator("#neighbour-map iframe").locator("path.gd-neighbour")
    expect(neighbours).to_have_count(20)  # waits for the map's script to draw them
    # Both cluster views, each marking a cluster centre; the main one once.
    for view in ("#clusters-before", "#clusters-after"):
        frame = page.frame_locator(f"{view} iframe")
        expect(frame.locator("path.gd-neighbour")).to_have_count(20)
        expect(frame.locator("path.gd-centre").first).to_be_attached()
        expect(frame.locator("path.gd-main-centre")).to_have_count(1)
    # Final point with its uncertainty circle, and the truth.
    result_frame = page.frame_locator("#result-map iframe")
    expect(result_frame.locator("path.gd-prediction")).to_have_count(1)
    expect(result_frame.locator("path.gd-uncertainty")).to_have_count(1)
    expect(result_frame.locator("path.gd-truth")).to_have_count(1)
    # The map works offline: country outlines are drawn from the bundled Natural Earth file.
    expect(result_frame.locator(".leaflet-outlines-pane path").nth(100)).to_be_attached()  # > 100 outlines

    error_line = page.locator("#error-line").inner_text()
    assert re.search(r"Error [\d,]+(\.\d)? km", error_line), error_line
    assert "44.9774, -93.2672" in error_line  # the photo's ground truth (Minneapolis)
    prediction = page.locator("#prediction").inner_text()
    assert re.search(r"-?\d+\.\d{4}, -?\d+\.\d{4}", prediction) and "confidence" in prediction
    error_km = float(re.search(r"Error ([\d,]+(?:\.\d)?) km", error_line).group(1).replace(",", ""))
    explanation = page.locator("#explanation").inner_text()
    if error_km >= 200:
        assert "Why it went wrong" in explanation and "neighbours" in explanation
    assert "Traceback" not in page.content()

    # The opacity slider re-blends the stored label map (no new segmentation run).
    before = page.locator("#overlay img").get_attribute("src")
    opacity = page.locator("#opacity input[type=number]")
    opacity.fill("0.9")
    opacity.press("Enter")
    page.wait_for_function(
        "(old) => { const img = document.querySelector('#overlay img'); return img && img.src !== old; }",
        arg=before, timeout=15_000,
    )

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOT_DIR / "app_result.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    page.close()


def test_non_image_and_truncated_uploads_get_a_readable_message(app_url, browser, shared, tmp_path):
    page = _open(browser, app_url)
    fake = tmp_path / "holiday.jpg"
    fake.write_text("these are my holiday notes, not a photo\n" * 20)
    _upload(page, fake, preview=False)
    page.click("#locate")
    status = page.locator("#status")
    status.get_by_text("cannot be used as a photo").wait_for(timeout=30_000)
    text = status.inner_text()
    assert "holiday.jpg" in text and "Traceback" not in text
    assert "/tmp/" not in text  # the server's upload path is not shown

    real = (shared / "data" / "im2gps3k-dev" / "images" / DEV_PHOTO).read_bytes()
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(real[: len(real) // 3])
    page.reload()
    page.wait_for_selector("#locate")
    _upload(page, truncated, preview=False)
    page.click("#locate")
    status.get_by_text("cannot be used as a photo").wait_for(timeout=30_000)
    assert "cut.jpg" in status.inner_text()
    assert "Traceback" not in page.content()
    page.close()
