"""The verification page in Debian's headless Chromium, against a real gunicorn server.

Uploads a signed image (file chooser), a stripped and cropped copy (drag and drop) and an unrelated
image (paste), checks the verdict each one gets and the outline drawn for the crop, and saves a
screenshot of every state at a phone and a desktop width under tests/screenshots/.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from provenance.config import Settings
from tests import transforms
from tests.conftest import api_key, fixture_bytes
from tests.test_api import grille_and_panel
from tests.test_server import free_port, start_server, wait_ready

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).parent / "screenshots"
MODEL = "aurora-2"
# Headless, no sandbox (CI runs as root), and none of Chromium's own traffic: CI reaches no network
# but package registries, and background requests would only slow the test down.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--lang=en-GB",
)
WIDTHS = {"phone": (390, True), "desktop": (1280, False)}
# Hands a file to the page the way a drop or a paste does; Selenium cannot drag from the desktop.
SYNTHETIC_TRANSFER = """
const [b64, name, type, kind] = arguments;
const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const data = new DataTransfer();
data.items.add(new File([bytes], name, {type}));
const init = {bubbles: true, cancelable: true};
if (kind === "drop") {
  const zone = document.getElementById("drop-zone");
  zone.dispatchEvent(new DragEvent("dragover", {...init, dataTransfer: data}));
  zone.dispatchEvent(new DragEvent("drop", {...init, dataTransfer: data}));
} else {
  document.body.dispatchEvent(new ClipboardEvent("paste", {...init, clipboardData: data}));
}
"""


@dataclass(frozen=True)
class Uploads:
    signed: Path
    cropped: Path
    crop_box: tuple[int, int, int, int]
    unrelated: Path
    not_an_image: Path
    tampered: Path
    resembling: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, dev_keys: Path) -> Iterator[tuple[str, Settings]]:
    data = tmp_path_factory.mktemp("browser-server") / "data"
    (data / "keys").mkdir(parents=True)
    for item in dev_keys.iterdir():
        (data / "keys" / item.name).write_bytes(item.read_bytes())
    settings = Settings(data_dir=data)
    port = free_port()
    log = data.parent / "server.log"
    process = start_server(settings, port, 1, log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, process, log)
        yield base, settings
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def uploads(server: tuple[str, Settings], tmp_path_factory: pytest.TempPathFactory) -> Uploads:
    base, settings = server
    key = api_key(settings, "sign")
    signed = b""
    for name, title in (("coffee", "Morning coffee"), ("rocket", "Launch at dawn")):
        response = requests.post(
            f"{base}/v1/generations",
            headers={"Authorization": f"Bearer {key}"},
            files={"image": (f"{name}.jpg", fixture_bytes(f"{name}.jpg"), "image/jpeg")},
            data={"metadata": f'{{"model": "{MODEL}", "public": {{"title": "{title}"}}}}'},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        signed = response.content
    grille, panel = grille_and_panel()
    response = requests.post(
        f"{base}/v1/generations",
        headers={"Authorization": f"Bearer {key}"},
        files={"image": ("grille.png", grille, "image/png")},
        data={"metadata": f'{{"model": "{MODEL}", "public": {{"title": "Speaker grille"}}}}'},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    folder = tmp_path_factory.mktemp("uploads")
    cropped, box = transforms.crop(signed, 0.5, (1.0, 0.3))  # re-encoded: the manifest is gone too
    tampered = bytearray(signed)
    tampered[len(tampered) - 2000] ^= 0x01  # inside the JPEG scan, after the manifest
    files = {
        "signed-rocket.jpg": signed,
        "cropped-rocket.jpg": cropped,
        "hubble.jpg": fixture_bytes("hubble.jpg"),
        "notes.txt": b"not an image at all\n",
        "tampered-rocket.jpg": bytes(tampered),
        "panel.png": panel,
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return Uploads(
        folder / "signed-rocket.jpg",
        folder / "cropped-rocket.jpg",
        box,
        folder / "hubble.jpg",
        folder / "notes.txt",
        folder / "tampered-rocket.jpg",
        folder / "panel.png",
    )


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: install Debian's chromium and chromium-driver (scripts/test does "
            "so as root or through sudo), or deselect this test with -m 'not browser'",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations are logged here
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    # Naming both binaries keeps Selenium Manager from looking for (or downloading) any browser.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_window_size(1280, 900)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver: WebDriver, base: str) -> None:
    driver.get(f"{base}/")
    WebDriverWait(driver, 10).until(lambda d: state(d) == "ready")


def console_errors(driver: WebDriver) -> list[str]:
    """Errors the page logged since the last call: a CSP violation or a script error shows up here."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def state(driver: WebDriver) -> str:
    return str(driver.find_element(By.ID, "main").get_attribute("data-state") or "")


def wait_for_answer(driver: WebDriver) -> str:
    WebDriverWait(driver, 30).until(lambda d: state(d) not in {"ready", "checking"})
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script("return [...document.images].every((i) => i.complete)")
    )
    return state(driver)


def choose_file(driver: WebDriver, path: Path) -> str:
    driver.find_element(By.ID, "file-input").send_keys(str(path))
    return wait_for_answer(driver)


def transfer(driver: WebDriver, path: Path, kind: str) -> str:
    driver.execute_script(
        SYNTHETIC_TRANSFER, base64.b64encode(path.read_bytes()).decode(), path.name, "image/jpeg", kind
    )
    return wait_for_answer(driver)


def text_of(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def screenshot(driver: WebDriver, name: str) -> None:
    """The whole page at each width, as a reader would scroll through it."""
    SCREENSHOTS.mkdir(exist_ok=True)
    for label, (width, mobile) in WIDTHS.items():
        metrics = {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": mobile}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        metrics["height"] = driver.execute_script("return document.documentElement.scrollHeight")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        (SCREENSHOTS / f"{name}-{label}.png").write_bytes(base64.b64decode(shot["data"]))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_signed_image_is_generated_by_our_model_with_intact_credentials(
    browser: WebDriver, server: tuple[str, Settings], uploads: Uploads
) -> None:
    open_page(browser, server[0])
    screenshot(browser, "0-start")
    assert choose_file(browser, uploads.signed) == "authentic"
    verdict = text_of(browser, "verdict")
    assert verdict.startswith(f"Generated by {MODEL} on ")
    assert verdict.endswith("its Content Credentials are intact.")
    state = browser.find_element(By.CSS_SELECTOR, "#credentials-summary .state").get_attribute("textContent")
    assert state == "Trusted"
    assert "(that is us)" in text_of(browser, "credentials-list")
    assert browser.switch_to.active_element.get_attribute("id") == "verdict"
    assert console_errors(browser) == []
    screenshot(browser, "1-signed")


def test_stripped_crop_is_a_cropped_copy_with_its_region_outlined(
    browser: WebDriver, server: tuple[str, Settings], uploads: Uploads
) -> None:
    open_page(browser, server[0])
    assert transfer(browser, uploads.cropped, "drop") == "matched"
    assert text_of(browser, "verdict").startswith(
        f"This looks like a cropped copy of an image generated by {MODEL} on "
    )
    assert "removed" in text_of(browser, "verdict-detail")
    assert text_of(browser, "credentials-summary").startswith("This file carries no Content Credentials.")
    points = browser.find_element(By.ID, "region-outline").get_attribute("points") or ""
    xs, ys = zip(*((float(x), float(y)) for x, y in (p.split(",") for p in points.split())), strict=True)
    left, top, right, bottom = uploads.crop_box
    tolerance = 0.1 * (right - left)
    assert abs(min(xs) - left) < tolerance and abs(max(xs) - right) < tolerance, points
    assert abs(min(ys) - top) < tolerance and abs(max(ys) - bottom) < tolerance, points
    drawn = browser.execute_script("return document.getElementById('region-outline').getBoundingClientRect()")
    shown = browser.execute_script("return document.getElementById('original-image').getBoundingClientRect()")
    assert shown["width"] > 100 and 0.5 * shown["width"] < drawn["width"] < shown["width"]
    assert browser.execute_script("return document.getElementById('original-image').naturalWidth") > 0
    assert console_errors(browser) == []
    screenshot(browser, "2-cropped-copy")


def test_unrelated_image_is_no_match(
    browser: WebDriver, server: tuple[str, Settings], uploads: Uploads
) -> None:
    open_page(browser, server[0])
    assert transfer(browser, uploads.unrelated, "paste") == "no_match"
    assert text_of(browser, "verdict") == "We found no match. That does not prove a person made this image."
    assert not browser.find_element(By.ID, "original-figure").is_displayed()
    assert console_errors(browser) == []
    screenshot(browser, "3-no-match")


def test_a_file_that_is_not_an_image_gets_the_problem_in_words(
    browser: WebDriver, server: tuple[str, Settings], uploads: Uploads
) -> None:
    open_page(browser, server[0])
    assert choose_file(browser, uploads.not_an_image) == "error"
    assert text_of(browser, "status").startswith("This does not look like an image we can read.")
    assert all("status of 415" in message for message in console_errors(browser))
    screenshot(browser, "4-not-an-image")


def test_altered_signed_image_is_a_copy_whose_credentials_failed(
    browser: WebDriver, server: tuple[str, Settings], uploads: Uploads
) -> None:
    open_page(browser, server[0])
    assert choose_file(browser, uploads.tampered) == "matched"
    assert text_of(browser, "verdict").startswith(
        f"This looks like a copy of an image generated by {MODEL} on "
    )
    assert "altered after signing" in text_of(browser, "verdict-detail")
    state = browser.find_element(By.CSS_SELECTOR, "#credentials-summary .state").get_attribute("textContent")
    assert state == "Invalid"
    failures = text_of(browser, "failures")
    assert failures and "A check failed." not in failures, failures  # every code is put in words
    assert "(not confirmed)" in text_of(browser, "credentials-list")
    assert console_errors(browser) == []
    screenshot(browser, "5-altered-after-signing")


def test_a_possible_match_is_told_in_words_without_showing_or_naming_the_image(
    browser: WebDriver, server: tuple[str, Settings], uploads: Uploads
) -> None:
    open_page(browser, server[0])
    assert choose_file(browser, uploads.resembling) == "possible_match"
    assert text_of(browser, "verdict") == "Possibly a copy of an image we generated — ask us to review it."
    assert "may never have been published" in text_of(browser, "verdict-detail")
    assert not browser.find_element(By.ID, "original-figure").is_displayed()
    assert not browser.find_element(By.ID, "record-section").is_displayed()
    assert "may never have been published" in text_of(browser, "no-original")
    assert MODEL not in browser.find_element(By.ID, "result").text
    assert console_errors(browser) == []
    screenshot(browser, "6-possible-match-withheld")


def test_a_signed_copy_of_a_deleted_generation_is_ours_with_nothing_more_shown(
    browser: WebDriver, server: tuple[str, Settings], tmp_path: Path
) -> None:
    base, settings = server
    response = requests.post(
        f"{base}/v1/generations",
        headers={"Authorization": f"Bearer {api_key(settings, 'sign')}"},
        files={"image": ("astronaut.jpg", fixture_bytes("astronaut.jpg"), "image/jpeg")},
        data={"metadata": f'{{"model": "{MODEL}", "public": {{"title": "Moonwalk"}}}}'},
        timeout=30,
    )
    generation_id = response.headers["X-Generation-Id"]
    deleted = requests.delete(
        f"{base}/v1/generations/{generation_id}",
        headers={"Authorization": f"Bearer {api_key(settings, 'admin')}"},
        timeout=30,
    )
    assert deleted.status_code == 200, deleted.text
    signed = tmp_path / "signed-astronaut.jpg"
    signed.write_bytes(response.content)
    open_page(browser, base)
    assert choose_file(browser, signed) == "deleted"
    verdict = text_of(browser, "verdict")
    assert verdict.startswith("Signed by us on ") and "unknown date" not in verdict
    assert verdict.endswith("the record of this image has since been deleted.")
    assert "deleted at its owner's request" in text_of(browser, "no-original")
    assert generation_id in text_of(browser, "record-list") and "Moonwalk" not in text_of(browser, "result")
    assert console_errors(browser) == []
    screenshot(browser, "7-deleted")


def test_the_keyboard_reaches_the_controls_in_reading_order(
    browser: WebDriver, server: tuple[str, Settings]
) -> None:
    open_page(browser, server[0])
    order = []
    for _ in range(2):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        order.append(browser.switch_to.active_element.get_attribute("id"))
    assert order == ["file-input", "paste-button"]
