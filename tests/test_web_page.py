"""The upload page in a real headless Chromium against the real gunicorn services.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them where it runs as root with apt) and selenium
(requirements-dev.txt); skips with the reason elsewhere. Selenium is pointed at those binaries, so nothing is
downloaded.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import cv2
import pytest
import requests

from facemask.images import decode_image
from facemask.local_server import REPO_ROOT, LocalService

CHROMIUM = os.environ.get("CHROMIUM_BINARY") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (requirements-dev.txt)")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="headless Chromium not found: apt-get install chromium chromium-driver (.ci/run does this as root)")]

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SCREENSHOT = REPO_ROOT / "docs" / "upload_page.png"


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1000", "--no-first-run", "--disable-background-networking"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def open_page(browser, url: str):
    browser.get(url + "/")
    WebDriverWait(browser, 20).until(
        lambda b: not b.find_element(By.ID, "service-status").text.startswith("Checking"))


def upload(browser, *paths: Path):
    browser.find_element(By.ID, "file-input").send_keys("\n".join(str(p) for p in paths))


def finished_sections(browser, count: int, timeout: float = 90):
    def settled(b):
        sections = b.find_elements(By.CSS_SELECTOR, "section.result.done, section.result.failed")
        return sections if len(sections) >= count else False
    return WebDriverWait(browser, timeout).until(settled)


def test_photos_are_annotated_and_tabled(browser, detection_service, sample_paths, sample_labels):
    open_page(browser, detection_service.url)
    assert "Ready" in browser.find_element(By.ID, "service-status").text
    # Keyboard: the first Tab from the page reaches the file chooser.
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "file-input"

    photos = sample_paths[:2]
    upload(browser, *photos)
    sections = finished_sections(browser, len(photos))
    assert not browser.find_element(By.ID, "errors").text
    by_title = {s.find_element(By.CSS_SELECTOR, ".result-title").text: s for s in sections}
    assert set(by_title) == {p.name for p in photos}
    for path in photos:
        section = by_title[path.name]
        image = section.find_element(By.CSS_SELECTOR, "img.annotated")
        WebDriverWait(browser, 10).until(lambda b, image=image: b.execute_script("return arguments[0].complete", image))
        height, width = decode_image(path).shape[:2]
        assert browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image) == [
            width, height]
        rows = section.find_elements(By.CSS_SELECTOR, "table.faces tbody tr")
        expected = sample_labels[path.name]
        assert len(rows) == len(expected)
        counts = {chip.get_attribute("data-label"): int(chip.text.rsplit(":", 1)[1])
                  for chip in section.find_elements(By.CSS_SELECTOR, ".counts li")}
        assert sum(counts.values()) == len(expected)
        assert counts == {label: sum(1 for face in expected if face["label"] == label)
                          for label in {face["label"] for face in expected}}
        links = {a.text: a.get_attribute("download") for a in section.find_elements(By.CSS_SELECTOR, ".downloads a")}
        assert links == {"Download annotated image": f"{path.stem}_annotated.jpg",
                         "Download JSON": f"{path.stem}.json"}

    # Everything the page loaded came from the service itself (no CDN: the machines are offline).
    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
    assert origins and set(origins) == {detection_service.url}

    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(SCREENSHOT if os.environ.get("FACEMASK_UPDATE_SCREENSHOT") == "1"
                                 else Path(os.environ.get("TMPDIR", "/tmp")) / "upload_page.png"))

    # A phone-sized window: nothing sticks out sideways (the table scrolls inside its own box).
    browser.set_window_size(390, 844)
    try:
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1"), "page wider than a phone"
    finally:
        browser.set_window_size(1280, 1000)


def test_a_file_that_is_not_an_image_gets_a_clear_error(browser, detection_service, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("these are not pixels")
    open_page(browser, detection_service.url)
    upload(browser, notes)
    (section,) = finished_sections(browser, 1)
    assert "failed" in section.get_attribute("class")
    error = browser.find_element(By.ID, "errors").text
    assert "notes.txt" in error and "not an image" in error
    assert not section.find_elements(By.CSS_SELECTOR, "img")

    # The same through drag and drop onto the drop zone.
    browser.execute_script("""
        const files = new DataTransfer();
        files.items.add(new File(["still not pixels"], "dropped.txt", {type: "text/plain"}));
        document.getElementById("drop-zone").dispatchEvent(
            new DragEvent("drop", {dataTransfer: files, bubbles: true, cancelable: true}));""")
    finished_sections(browser, 2)
    error = browser.find_element(By.ID, "errors").text
    assert "dropped.txt" in error and "not an image" in error


def test_video_upload_shows_progress_and_the_annotated_video(browser, detection_service, sample_paths, tmp_path):
    frame = cv2.resize(cv2.imread(str(sample_paths[0])), (640, 480))
    clip = tmp_path / "entrance.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 480))
    frames = 40
    for index in range(frames):
        writer.write(cv2.flip(frame, 1) if index % 2 else frame)
    writer.release()

    open_page(browser, detection_service.url)
    upload(browser, clip)
    seen, deadline = set(), time.monotonic() + 180
    while time.monotonic() < deadline:
        sections = browser.find_elements(By.CSS_SELECTOR, "section.result")
        if sections:
            seen.add(sections[0].find_element(By.CSS_SELECTOR, ".result-state").text)
            if re.search(r"\b(done|failed)\b", sections[0].get_attribute("class")):
                break
        time.sleep(0.1)
    (section,) = finished_sections(browser, 1, timeout=5)
    assert not browser.find_element(By.ID, "errors").text
    assert any(re.fullmatch(rf"Annotating frame \d+ of {frames}", text) for text in seen), seen
    assert section.find_element(By.CSS_SELECTOR, ".result-state").text.startswith(f"{frames} frames")
    video = section.find_element(By.TAG_NAME, "video")
    # The browser can play what the service wrote (VP8 WebM).
    WebDriverWait(browser, 20).until(lambda b: b.execute_script("return arguments[0].readyState >= 1", video))
    assert browser.execute_script("return [arguments[0].videoWidth, arguments[0].videoHeight]", video) == [640, 480]
    people = section.find_element(By.CSS_SELECTOR, ".result-media .people").text
    assert re.fullmatch(r"People seen: \d+( \(.+\))?", people), people
    rows = section.find_elements(By.CSS_SELECTOR, "table.faces tbody tr")
    assert rows, "faces of the video are tabled"
    assert all(row.find_element(By.TAG_NAME, "td").text.startswith("#") for row in rows[:5]), "track ids tabled"
    links = [a.get_attribute("download") for a in section.find_elements(By.CSS_SELECTOR, ".downloads a")]
    assert links == ["entrance_annotated.webm", "entrance.json"]


def test_classifier_down_is_said_plainly(browser, sample_paths, tmp_path):
    with LocalService("detection", workers=1, env={"CLASSIFIER_URL": "http://127.0.0.1:9"},
                      log_path=tmp_path / "detection.log") as service:
        open_page(browser, service.url)
        status = browser.find_element(By.ID, "service-status")
        assert "down" in status.get_attribute("class") and "classifier is not answering" in status.text
        upload(browser, sample_paths[0])
        (section,) = finished_sections(browser, 1, timeout=120)
        error = browser.find_element(By.ID, "errors").text
        assert "classifier is not answering" in error and sample_paths[0].name in error
        labels = {row.get_attribute("data-label")
                  for row in section.find_elements(By.CSS_SELECTOR, "table.faces tbody tr")}
        assert labels == {"unclassified"}, "faces found are still listed, marked unclassified"
        # A video is refused up front rather than annotated with every face unclassified.
        clip = tmp_path / "clip.mp4"
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
        writer.write(cv2.resize(cv2.imread(str(sample_paths[0])), (64, 48)))
        writer.release()
        response = requests.post(service.url + "/videos", files={"video": clip.open("rb")}, timeout=30)
        assert response.status_code == 503 and "classifier" in response.json()["error"]
