"""The upload page in a real headless Chromium against the real gunicorn services.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them where it runs as root with apt) and selenium
(requirements-dev.txt); skips with the reason elsewhere. Selenium is pointed at those binaries, so nothing is
downloaded.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from facemask.core.images import decode_image
from facemask.core.paths import REPO_ROOT
from facemask.serving.local_server import LocalService, free_port
from tests.browser import CHROMEDRIVER, CHROMIUM, MISSING, start_chromium

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (requirements-dev.txt)")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason=MISSING)]

from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

DOCS = REPO_ROOT / "docs"
SCREENSHOTS = DOCS if os.environ.get("FACEMASK_UPDATE_SCREENSHOT") == "1" else Path(os.environ.get("TMPDIR", "/tmp"))
PAGE_ERRORS = "section.result .error"


WEBCAM_SAMPLE = "group_mixed.jpg"


def fake_camera_file(folder: Path) -> Path:
    """Chromium's fake camera plays a Y4M file in a loop: here the sample photo drifting a few pixels a frame."""
    photo = cv2.resize(cv2.imread(str(REPO_ROOT / "sample-images" / WEBCAM_SAMPLE)), (640, 480))
    path = folder / "camera.y4m"
    with path.open("wb") as out:
        out.write(b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg\n")
        for index in range(20):
            frame = np.roll(photo, (index % 10) * 2, axis=1)
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    camera = fake_camera_file(tmp_path_factory.mktemp("camera"))
    driver = start_chromium(webdriver, "1366,900", "--use-fake-device-for-media-stream",
                            "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={camera}")
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def downloads(browser, tmp_path) -> Path:
    """Each test's own download folder, so a file name never meets one an earlier test saved."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})
    return folder


@pytest.fixture(autouse=True)
def no_console_errors(browser):
    browser.get_log("browser")  # what earlier tests left
    yield
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"
              and not expected_console_error(entry["message"])]
    assert not errors, errors


def expected_console_error(message: str) -> bool:
    """The browser itself logs every HTTP error answer of a fetch; those the tests provoke on purpose are expected
    (the page says them plainly), any script error or other failed load is not."""
    return bool(re.search(r"/(detect\?annotated=1|videos|ready|fetch-photo) - Failed to load resource: the server "
                          r"responded with a status of (400|503)", message))


def open_page(browser, url: str, keep_results: bool = False):
    browser.get(url + "/")
    if not keep_results:
        browser.execute_script("sessionStorage.clear()")
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


def downloaded(folder: Path, name: str, timeout: float = 20) -> Path:
    path = folder / name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and not (folder / (name + ".crdownload")).exists() and path.stat().st_size:
            return path
        time.sleep(0.1)
    raise AssertionError(f"{name} was not downloaded: {sorted(p.name for p in folder.iterdir())}")


def active(browser):
    return browser.switch_to.active_element


def press(browser, *keys):
    """Keys to whatever has the focus, as a person typing (send_keys on a file input would take them as a path)."""
    ActionChains(browser).send_keys(*keys).perform()


def tab_to(browser, predicate, limit: int = 80):
    """Presses Tab until the focused element satisfies predicate: the keyboard-only path."""
    for _ in range(limit):
        press(browser, Keys.TAB)
        if predicate(active(browser)):
            return active(browser)
    raise AssertionError("not reachable with the Tab key")


def fits(browser, selector: str) -> bool:
    return browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].every(e => e.scrollWidth <= e.clientWidth + 1)", selector)


def test_photos_keyboard_only_path_numbered_boxes_zoom_and_downloads(browser, detection_service, sample_paths,
                                                                      sample_labels, downloads):
    open_page(browser, detection_service.url)
    status = browser.find_element(By.ID, "service-status")
    assert "ready" in status.get_attribute("class")
    assert "mask, no mask or mask worn wrong" in status.text  # three classes
    # The limits are stated before anything is uploaded, in one unit each, from /info.
    limits = browser.find_element(By.ID, "limits").text
    assert limits == "Up to 20 MB per file; videos up to 1,800 frames (1 min at 30 frames/s).", limits

    # Keyboard: the first Tab from the page reaches the file chooser.
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert active(browser).get_attribute("id") == "file-input"
    photos = sample_paths[:2]
    upload(browser, *photos)
    sections = finished_sections(browser, len(photos))
    assert not browser.find_elements(By.CSS_SELECTOR, PAGE_ERRORS)
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
        assert counts == {label: sum(1 for face in expected if face["label"] == label)
                          for label in {face["label"] for face in expected}}
        # Numbered boxes over the faces, the same numbers as the rows, each over its row's box.
        marks = section.find_elements(By.CSS_SELECTOR, ".stage .mark")
        assert [m.text for m in marks] == [r.find_element(By.TAG_NAME, "td").text for r in rows] == [
            str(i) for i in range(1, len(rows) + 1)]
        shown_width = image.size["width"]
        for row, mark in zip(rows, marks):
            x1 = int(row.find_elements(By.TAG_NAME, "td")[3].text.split(",")[0])
            offset = mark.location["x"] - image.location["x"]
            assert abs(offset - max(0, x1) * shown_width / width) <= 3, (offset, x1)
        # Hovering a row highlights its box, and hovering a box its row.
        ActionChains(browser).move_to_element(rows[2]).perform()
        assert [m.text for m in section.find_elements(By.CSS_SELECTOR, ".mark.highlight")] == ["3"]
        ActionChains(browser).move_to_element(marks[4]).perform()
        assert [r.get_attribute("data-index")
                for r in section.find_elements(By.CSS_SELECTOR, "tbody tr.highlight")] == ["5"]
        links = {a.text: a.get_attribute("download") for a in section.find_elements(By.CSS_SELECTOR, ".downloads a")}
        assert links == {"Download annotated image": f"{path.stem}_annotated.jpg",
                         "Download JSON": f"{path.stem}.json"}
    summary = browser.find_element(By.ID, "batch-summary").text
    assert summary.startswith(f"All 2 photos: {sum(len(sample_labels[p.name]) for p in photos)} faces (")

    # Keyboard only: Tab to the newest result's picture, Enter opens it full size, zoom in, Escape closes.
    newest = browser.find_elements(By.CSS_SELECTOR, "section.result")[0]
    newest_name = newest.find_element(By.CSS_SELECTOR, ".result-title").text
    tab_to(browser, lambda e: "stage" in (e.get_attribute("class") or ""))
    press(browser, Keys.ENTER)
    viewer = browser.find_element(By.ID, "viewer")
    assert viewer.get_attribute("open") is not None
    zoomed = viewer.find_element(By.CSS_SELECTOR, ".stage img")
    pane = browser.find_element(By.ID, "viewer-pane")
    # Opens at fit: the whole photo in view (issue 37: at 100 % a phone showed a corner of it).
    fitted = zoomed.size["width"]
    assert fitted <= pane.size["width"] and zoomed.size["height"] <= pane.size["height"], "opens at fit"
    assert len(viewer.find_elements(By.CSS_SELECTOR, ".mark")) == len(sample_labels[newest_name])
    tab_to(browser, lambda e: e.get_attribute("id") == "zoom-in")
    press(browser, Keys.ENTER)
    assert abs(zoomed.size["width"] - 1.5 * fitted) <= 2
    ActionChains(browser).move_to_element(pane).click_and_hold().move_by_offset(-80, -60).release().perform()
    assert browser.execute_script("return [arguments[0].scrollLeft, arguments[0].scrollTop]", pane) == [80, 60]
    press(browser, Keys.ESCAPE)
    assert viewer.get_attribute("open") is None

    # ...then Tab to its downloads and press Enter: the files arrive and are what they say.
    tab_to(browser, lambda e: e.text == "Download annotated image")
    press(browser, Keys.ENTER)
    picture = decode_image(downloaded(downloads, f"{Path(newest_name).stem}_annotated.jpg").read_bytes())
    assert picture.shape[:2] == decode_image(REPO_ROOT / "sample-images" / newest_name).shape[:2]
    tab_to(browser, lambda e: e.text == "Download JSON")
    press(browser, Keys.ENTER)
    record = json.loads(downloaded(downloads, f"{Path(newest_name).stem}.json").read_text())
    assert record["filename"] == newest_name and len(record["faces"]) == len(sample_labels[newest_name])
    assert "annotated_image" not in record

    # Minimum confidence from the keyboard: rows below it leave the table, their boxes are greyed out.
    tab_to(browser, lambda e: e.get_attribute("id") == "min-confidence")
    section = browser.find_elements(By.CSS_SELECTOR, "section.result")[0]
    scores = sorted(face["score"] for face in record["faces"])
    threshold = math.floor(round(scores[0] * 1000) / 10) + 1  # 1 % a step: the first that leaves the least sure out
    press(browser, *[Keys.ARROW_RIGHT] * threshold)
    assert browser.find_element(By.ID, "min-confidence-value").text == f"{threshold} %"
    below = sum(1 for score in scores if round(score * 1000) / 10 < threshold)
    assert below >= 1
    visible = [r for r in section.find_elements(By.CSS_SELECTOR, "tbody tr") if r.is_displayed()]
    assert len(visible) == len(scores) - below
    assert len(section.find_elements(By.CSS_SELECTOR, ".mark.filtered")) == below
    assert section.find_element(By.CSS_SELECTOR, "table.faces caption").text == (
        f"Faces found: {len(scores)} ({below} of {len(scores)} hidden by the filters)")
    press(browser, Keys.HOME)
    assert all(r.is_displayed() for r in section.find_elements(By.CSS_SELECTOR, "tbody tr"))

    # One download of everything, from the keyboard: a zip of the annotated photos, their JSON and a CSV of faces.
    tab_to(browser, lambda e: e.get_attribute("id") == "download-all")
    press(browser, Keys.ENTER)
    with zipfile.ZipFile(downloaded(downloads, "facemask-results.zip")) as bundle:
        assert bundle.testzip() is None  # every member's CRC checks out
        assert sorted(bundle.namelist()) == sorted(["faces.csv", *(f"{p.stem}_annotated.jpg" for p in photos),
                                                    *(f"{p.stem}.json" for p in photos)])
        rows = list(csv.DictReader(io.StringIO(bundle.read("faces.csv").decode())))
        for path in photos:
            assert decode_image(bundle.read(f"{path.stem}_annotated.jpg")).shape == decode_image(path).shape
            faces = json.loads(bundle.read(f"{path.stem}.json"))["faces"]
            assert [(r["face"], r["label"], float(r["probability"])) for r in rows if r["file"] == path.name] == [
                (str(i), face["label"], face["score"]) for i, face in enumerate(faces, 1)]
        assert len(rows) == sum(len(sample_labels[p.name]) for p in photos)

    # Everything the page loaded came from the service itself (no CDN: the machines are offline).
    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
    assert origins and set(origins) == {detection_service.url}

    # Readable at 1366 px and on a phone: no table scrolls sideways, nothing sticks out of the page.
    assert fits(browser, ".table-wrap") and fits(browser, "html")
    browser.set_window_size(390, 844)
    try:
        assert fits(browser, ".table-wrap"), "face table clipped on a phone"
        assert fits(browser, "html"), "page wider than a phone"
    finally:
        browser.set_window_size(1366, 900)

    # Results stay across a reload; Clear removes them, also for the next reload.
    open_page(browser, detection_service.url, keep_results=True)
    titles = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "section.result.done .result-title")]
    assert sorted(titles) == sorted(p.name for p in photos)
    assert len(browser.find_elements(By.CSS_SELECTOR, ".stage .mark")) == sum(len(sample_labels[p.name])
                                                                           for p in photos)
    tab_to(browser, lambda e: e.get_attribute("id") == "clear-results")
    press(browser, Keys.ENTER)
    assert not browser.find_elements(By.CSS_SELECTOR, "section.result")
    open_page(browser, detection_service.url, keep_results=True)
    assert not browser.find_elements(By.CSS_SELECTOR, "section.result")


def test_examples_are_one_click_each(browser, detection_service, sample_labels):
    open_page(browser, detection_service.url)
    buttons = WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#example-list button"))
    assert len(buttons) == len(sample_labels) + 1  # the photos and the example video (issue 37)
    assert buttons[0].get_attribute("aria-label") == "Try the example video example_entrance.webm"
    WebDriverWait(browser, 20).until(lambda b: b.execute_script(
        "return document.querySelector('#example-list video').readyState >= 2"))  # its first frame shows
    WebDriverWait(browser, 10).until(lambda b: all(b.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", img)
        for img in b.find_elements(By.CSS_SELECTOR, "#example-list img")))
    name = "group_worn_wrong.jpg"
    # A slow uplink (about 2 s for this photo): the card shows the upload's progress, then the analysis.
    browser.set_network_conditions(offline=False, latency=5, download_throughput=10_000_000,
                                   upload_throughput=100_000)
    try:
        next(b for b in buttons if b.get_attribute("aria-label").endswith(name)).click()
        seen, bars, deadline = [], set(), time.monotonic() + 60
        while time.monotonic() < deadline and not browser.find_elements(By.CSS_SELECTOR, "section.result.done"):
            with contextlib.suppress(StaleElementReferenceException):
                # The state line and whether the bar shows a fraction (value set) or moves (indeterminate).
                phase = browser.execute_script("""const s = document.querySelector("section.result");
                    if (!s) return null; const bar = s.querySelector(".result-progress");
                    return [s.querySelector(".result-state").textContent, bar.hidden ? "hidden"
                        : bar.hasAttribute("value") ? "fraction" : "indeterminate"];""")
                if phase and (not seen or seen[-1] != phase[0]):
                    seen.append(phase[0])
                if phase:
                    bars.add(tuple(phase) if phase[0] == "Analysing…" else ("upload", phase[1]))
            time.sleep(0.05)
    finally:
        browser.delete_network_conditions()
    assert any(re.fullmatch(r"Uploading: [1-9]\d? %", text) for text in seen), seen
    # Issue 37: the bar stood at 100 % while the service worked; the analysis now shows a moving bar.
    assert ("Analysing…", "indeterminate") in bars and ("Analysing…", "fraction") not in bars, bars
    (section,) = finished_sections(browser, 1)
    assert section.find_element(By.CSS_SELECTOR, ".result-title").text == name
    labels = [r.get_attribute("data-label") for r in section.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert sorted(labels) == sorted(face["label"] for face in sample_labels[name])


def card_errors(browser) -> list[str]:
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, PAGE_ERRORS)]


def test_a_file_that_is_not_an_image_gets_a_clear_error_once(browser, detection_service, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("these are not pixels")
    open_page(browser, detection_service.url)
    upload(browser, notes)
    (section,) = finished_sections(browser, 1)
    assert "failed" in section.get_attribute("class")
    assert section.find_element(By.CSS_SELECTOR, ".result-title").text == "notes.txt"
    (error,) = card_errors(browser)  # once, in the file's card
    assert "notes.txt" not in error, error  # the title names the file, once
    # For people (issue 37): a sentence that says what happened, then what to do.
    assert error.startswith("Not an image") and error.endswith("Choose a photo (JPEG, PNG, WebP…) or a short video "
                                                                "and try again."), error
    assert not section.find_elements(By.CSS_SELECTOR, "img")

    # The same through drag and drop onto the drop zone.
    browser.execute_script("""
        const files = new DataTransfer();
        files.items.add(new File(["still not pixels"], "dropped.txt", {type: "text/plain"}));
        document.getElementById("drop-zone").dispatchEvent(
            new DragEvent("drop", {dataTransfer: files, bubbles: true, cancelable: true}));""")
    finished_sections(browser, 2)
    errors = card_errors(browser)
    assert len(errors) == 2 and errors[1].startswith("Not an image") and "dropped.txt" not in errors[1]


def test_a_file_over_the_limit_is_refused_by_the_page_in_the_same_unit(browser, detection_service, tmp_path):
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * 19_999_900)  # passed the page's old check, then the service refused it
    open_page(browser, detection_service.url)
    upload(browser, big)
    (section,) = finished_sections(browser, 1)
    (error,) = card_errors(browser)
    # In the unit of the limits line (MB, not bytes: issue 37), with enough digits to differ from the limit.
    assert error == ("Too large: this file is 19.9999 MB, and the service takes up to 20 MB per file (a little of "
                     "which the upload itself uses). Make it smaller (a lower resolution or stronger compression) and "
                     "try again."), error
    # Nothing was sent: the service's own answer to this body would be its 413.
    sent = browser.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes('/detect')).length")
    assert sent == 0


def test_video_upload_shows_progress_people_and_chart(browser, detection_service, sample_paths, tmp_path,
                                                      downloads):
    frame = cv2.resize(cv2.imread(str(sample_paths[0])), (640, 480))
    clip = tmp_path / "entrance.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 480))
    frames = 40
    for index in range(frames):
        # The people walk in: the left half of the picture is blank for the first second.
        shown = frame.copy()
        if index < 10:
            shown[:, :320] = 0
        writer.write(shown)
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
        time.sleep(0.05)
    (section,) = finished_sections(browser, 1, timeout=5)
    assert not card_errors(browser)
    assert any(re.fullmatch(rf"Annotating frame \d+ of {frames}", text) for text in seen), seen
    assert not any("previous video" in text for text in seen), seen  # nothing else was queued
    assert section.find_element(By.CSS_SELECTOR, ".result-state").text.startswith(f"{frames} frames")
    video = section.find_element(By.TAG_NAME, "video")
    # The browser can play what the service wrote (VP8 WebM).
    WebDriverWait(browser, 20).until(lambda b: b.execute_script("return arguments[0].readyState >= 1", video))
    assert browser.execute_script("return [arguments[0].videoWidth, arguments[0].videoHeight]", video) == [640, 480]
    people = section.find_element(By.CSS_SELECTOR, ".result-media .people").text
    total = int(re.fullmatch(r"People seen: (\d+)( \(.+\))?", people).group(1))

    # One row per person, from the job's record: track, label, first and last seen, time visible.
    links = {a.text: a for a in section.find_elements(By.CSS_SELECTOR, ".downloads a")}
    assert [a.get_attribute("download") for a in links.values()] == ["entrance_annotated.webm",
                                                                      "entrance_annotated.json"]
    links["Download JSON"].click()
    record = json.loads(downloaded(downloads, "entrance_annotated.json").read_text())
    links["Download annotated video"].click()
    capture = cv2.VideoCapture(str(downloaded(downloads, "entrance_annotated.webm")))
    assert capture.read()[0] and capture.get(cv2.CAP_PROP_FRAME_WIDTH) == 640
    capture.release()
    counted = [track for track in record["summary"]["tracks"] if track["counted"]]
    assert len(counted) == total >= 4
    rows = section.find_elements(By.CSS_SELECTOR, "table.faces tbody tr")
    headers = [th.text for th in section.find_elements(By.CSS_SELECTOR, "table.faces th")]
    assert headers == ["Person", "Label", "First seen", "Last seen", "Visible"]
    assert [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows] == [
        [f"#{t['track_id']}", {"with_mask": "Mask", "without_mask": "No mask"}.get(t["label"], t["label"]),
         f"{t['first_time_s']:.1f} s", f"{t['last_time_s']:.1f} s", f"{t['seconds_on_screen']:.1f} s"]
        for t in counted]
    assert {t["first_time_s"] for t in counted} > {0.0}, "someone walks in later"
    # Clicking a person seeks the video to when they were first seen.
    late = max(range(len(counted)), key=lambda i: counted[i]["first_time_s"])
    rows[late].click()
    assert abs(browser.execute_script("return arguments[0].currentTime", video)
               - counted[late]["first_time_s"]) < 0.05
    # The chart: one line per label of the people, as inline SVG.
    lines = section.find_elements(By.CSS_SELECTOR, ".chart polyline")
    assert {line.get_attribute("data-label") for line in lines} == {t["label"] for t in counted}
    assert all(len(line.get_attribute("points").split()) == len(record["frames"]) for line in lines)
    # Issue 37: the chart's playhead follows the video, and a click on the chart seeks the video.
    playhead = section.find_element(By.CSS_SELECTOR, ".chart .playhead")
    WebDriverWait(browser, 5).until(lambda b: abs(float(playhead.get_attribute("data-time") or -1)
                                                  - counted[late]["first_time_s"]) < 0.05)
    end = max(frame["time_s"] for frame in record["frames"])
    late_x = float(playhead.get_attribute("x1"))
    assert late_x == pytest.approx(28 + (320 - 28 - 6) * counted[late]["first_time_s"] / end, abs=0.1)
    assert late_x > 28  # the chart's left edge, where it starts
    chart = section.find_element(By.CSS_SELECTOR, ".chart")
    ActionChains(browser).move_to_element(chart).click().perform()  # the middle: 160 of its 320 units
    WebDriverWait(browser, 5).until(lambda b: abs(b.execute_script("return arguments[0].currentTime", video)
                                                  - end * (160 - 28) / (320 - 28 - 6)) < end * 0.05)
    # A face per person, blurred while the privacy box is ticked (the default), sharp when it is not.
    thumbnails = section.find_elements(By.CSS_SELECTOR, "img.thumbnail")
    assert len(thumbnails) == len(counted)
    WebDriverWait(browser, 20).until(lambda b: all(b.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", t) for t in thumbnails))
    assert all(t.get_attribute("src").endswith("?privacy=blur") for t in thumbnails)
    blurred = decode_image(requests.get(thumbnails[0].get_attribute("src"), timeout=10).content)
    browser.find_element(By.ID, "privacy-blur").click()
    assert all(t.get_attribute("src").endswith("?privacy=none") for t in thumbnails)
    sharp = decode_image(requests.get(thumbnails[0].get_attribute("src"), timeout=10).content)
    assert blurred.shape == sharp.shape and sharp_edges(sharp) > 2 * sharp_edges(blurred)
    browser.find_element(By.ID, "privacy-blur").click()
    browser.execute_script("arguments[0].scrollIntoView()", section)
    browser.save_screenshot(str(SCREENSHOTS / "upload_page_video.png"))
    browser.set_window_size(390, 844)
    try:
        assert fits(browser, ".table-wrap") and fits(browser, "html"), "people table clipped on a phone"
    finally:
        browser.set_window_size(1366, 900)

    # Kept across a reload: the same people, read again from the job's record.
    open_page(browser, detection_service.url, keep_results=True)
    section = finished_sections(browser, 1, timeout=20)[0]
    assert len(section.find_elements(By.CSS_SELECTOR, "table.faces tbody tr")) == len(counted)
    assert section.find_elements(By.CSS_SELECTOR, ".chart polyline")
    assert browser.find_element(By.CSS_SELECTOR, "#batch-summary .summary-text").text == f"1 video: {total} people."
    browser.find_element(By.ID, "download-all").click()
    with zipfile.ZipFile(downloaded(downloads, "facemask-results.zip")) as bundle:
        assert bundle.testzip() is None
        assert sorted(bundle.namelist()) == ["entrance_annotated.json", "entrance_annotated.webm", "faces.csv",
                                             "people.csv"]
        assert json.loads(bundle.read("entrance_annotated.json")) == record
        assert bundle.read("entrance_annotated.webm") == (downloads / "entrance_annotated.webm").read_bytes()
        people_rows = list(csv.DictReader(io.StringIO(bundle.read("people.csv").decode())))
        assert [(r["person"], r["label"]) for r in people_rows] == [(str(t["track_id"]), t["label"]) for t in counted]


def sharp_edges(image: np.ndarray) -> float:
    """Detail left in a picture: the variance of its Laplacian (a blurred face has little)."""
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def test_classifier_down_is_said_plainly_and_the_header_follows_it(browser, sample_paths, tmp_path):
    classifier_port = free_port()
    with LocalService("detection", workers=1, env={"CLASSIFIER_URL": f"http://127.0.0.1:{classifier_port}"},
                      log_path=tmp_path / "detection.log") as service:
        open_page(browser, service.url)
        status = browser.find_element(By.ID, "service-status")
        assert "down" in status.get_attribute("class") and "classifier is not answering" in status.text
        clip = tmp_path / "clip.mp4"
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
        writer.write(cv2.resize(cv2.imread(str(sample_paths[0])), (64, 48)))
        writer.release()
        upload(browser, sample_paths[0], clip)
        by_title = {s.find_element(By.CSS_SELECTOR, ".result-title").text: s
                    for s in finished_sections(browser, 2, timeout=120)}
        photo, video = by_title[sample_paths[0].name], by_title["clip.mp4"]
        errors = card_errors(browser)
        assert len(errors) == 2, errors  # once per file, not twice
        for error in errors:
            # Plain words, the same for photos and videos: no Python exception, no internal address.
            assert error.startswith("The classifier is not answering"), error
            assert error.endswith("Press Retry when it is back."), error
            assert not re.search(r"http|127\.0\.0\.1|Errno|Connection|Pool", error), error
        labels = {row.get_attribute("data-label") for row in photo.find_elements(By.CSS_SELECTOR, "tbody tr")}
        assert labels == {"unclassified"}, "faces found are still listed, marked unclassified"
        assert not video.find_elements(By.TAG_NAME, "video")

        assert browser.find_element(By.ID, "batch-summary").text.startswith("1 photo: 6 faces (Unclassified: 6)")

        # The classifier comes back: the header turns ready by itself, without a reload.
        with LocalService("classification", port=classifier_port, workers=1, log_path=tmp_path / "classifier.log"):
            WebDriverWait(browser, 30).until(lambda b: "ready" in status.get_attribute("class"))
            assert status.text.startswith("Ready")
            # Issue 37: the unclassified card offers Retry, and its faces are then classified everywhere.
            # (The detection service waits out its 5 s circuit cool-down before asking the classifier again: a
            # retry inside it answers unclassified once more, with Retry again.)
            for _ in range(4):
                photo.find_element(By.CSS_SELECTOR, ".result-actions .retry").click()
                WebDriverWait(browser, 60).until(
                    lambda b: re.search(r"\b(done|failed)\b", photo.get_attribute("class")))
                if not photo.find_elements(By.CSS_SELECTOR, ".error"):
                    break
                time.sleep(3)
            assert not photo.find_elements(By.CSS_SELECTOR, ".error"), photo.text
            labels = {row.get_attribute("data-label") for row in photo.find_elements(By.CSS_SELECTOR, "tbody tr")}
            assert labels and "unclassified" not in labels
            summary = browser.find_element(By.ID, "batch-summary").text
            assert summary.startswith("1 photo: 6 faces (") and "Unclassified" not in summary, summary
            assert [t.text for t in browser.find_elements(By.CSS_SELECTOR, ".result-title")] == [
                sample_paths[0].name, "clip.mp4"], "retried in place"


def test_webcam_live_boxes_over_the_video(browser, detection_service, sample_labels):
    open_page(browser, detection_service.url)
    tab_to(browser, lambda e: e.get_attribute("id") == "webcam-toggle")
    press(browser, Keys.ENTER)
    video = browser.find_element(By.ID, "webcam-video")
    WebDriverWait(browser, 20).until(lambda b: b.execute_script("return arguments[0].videoWidth", video) == 640)
    state = browser.find_element(By.ID, "webcam-state")
    # Boxes over the live video, one per face of the photo the fake camera shows, with the photo's labels; frames/s
    # measured once a few answers are in.
    WebDriverWait(browser, 60).until(lambda b: float(state.get_attribute("data-fps") or 0) > 0
                                     and len(b.find_elements(By.CSS_SELECTOR, "#webcam-marks .mark")) == 6)
    # The labels settle over a few answers (smoothed over the last 5); one run in two CI runs showed a 7th mark for a
    # moment, so the settled state is waited for rather than read after a fixed pause.
    expected = sorted(face["label"] for face in sample_labels[WEBCAM_SAMPLE])

    def live_labels(b):
        return sorted(b.execute_script(
            "return [...document.querySelectorAll('#webcam-marks .mark')].map(m => m.dataset.label)"))

    with contextlib.suppress(TimeoutException):  # the assertion below says what was there instead
        WebDriverWait(browser, 20).until(lambda b: live_labels(b) == expected)
    assert live_labels(browser) == expected
    fps = float(state.get_attribute("data-fps"))
    assert fps > 0 and re.fullmatch(r"Live: 6 faces found\. \d+\.\d frames/s analysed\.", state.text), state.text
    print(f"webcam: {fps:.2f} frames/s analysed (640x480 frames, one in flight)")
    # The marks are redrawn with every answer: checked in one script, against the live ones.
    inside = browser.execute_script("""
        const v = arguments[0].getBoundingClientRect();
        const marks = [...document.querySelectorAll("#webcam-marks .mark")];
        return marks.length === 6 && marks.every(m => { const r = m.getBoundingClientRect();
            return r.left >= v.left - 1 && r.right <= v.right + 1 && r.top >= v.top - 1
                && r.bottom <= v.bottom + 1; });""", video)
    assert inside, "boxes drawn over the video"
    press(browser, Keys.ENTER)  # the focus is still on the button: stop
    assert not browser.find_element(By.ID, "webcam").is_displayed()
    assert browser.execute_script("return arguments[0].srcObject", video) is None
