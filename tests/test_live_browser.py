"""The MJPEG preview in a real browser: Debian's headless Chromium, driven by Selenium, shows moving frames."""

from __future__ import annotations

import io
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from live_support import identify, live_output, numbered_frame
from PIL import Image

from vidrestore.live.preview import PreviewServer
from vidrestore.live.types import LiveStats

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=800,700"]
WAIT_S = 30
BELOW_STATS = slice(120, None)  # the statistics box covers the top left of a 320x240 frame

pytestmark = pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                reason="Chromium is not installed (Debian packages chromium and chromium-driver; "
                                       ".ci/run installs them)")


@pytest.fixture
def browser() -> Iterator[object]:
    """Headless Chromium with a fresh profile, through the system's chromedriver (nothing is downloaded)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        try:
            yield driver
        finally:
            driver.quit()


class Feeder:
    """Writes numbered frames to the preview from a thread, about 20 a second, until stopped."""

    def __init__(self, preview: PreviewServer, stats: LiveStats) -> None:
        self.preview, self.stats = preview, stats
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-feeder")

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            output = live_output(numbered_frame(self.sent), self.sent)
            self.stats.frame_in(output.arrival)
            self.preview.write(output)
            self.stats.frame_out(output, time.monotonic())
            self.sent += 1

    def __enter__(self) -> "Feeder":
        self.stats.source_up = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def stream_picture(driver: object) -> np.ndarray:
    """What the page's <img> shows right now, as RGB at the frame's size."""
    from selenium.webdriver.common.by import By

    png = driver.find_element(By.ID, "stream").screenshot_as_png
    return np.array(Image.open(io.BytesIO(png)).convert("RGB"))


def test_preview_page_plays_the_stream_in_chromium(browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    stats = LiveStats()
    preview = PreviewServer(port=0, stats=stats, fps=15)
    try:
        with Feeder(preview, stats) as feeder:
            browser.get(preview.url)
            wait = WebDriverWait(browser, WAIT_S)
            wait.until(lambda d: d.execute_script(
                "const img = document.getElementById('stream'); return img.complete && img.naturalWidth;") == 320)
            first = stream_picture(browser)
            assert first.shape == (240, 320, 3), "the <img> is shown at the frame's size"
            first_index = identify(first, rows=BELOW_STATS)
            time.sleep(0.5)
            second = stream_picture(browser)
            second_index = identify(second, rows=BELOW_STATS)
            assert second_index > first_index, "the picture moves on as new frames come"
            assert second_index < feeder.sent
            assert np.abs(second[:30, :90].astype(int) - numbered_frame(second_index)[:30, :90]).mean() > 20, \
                "the statistics are drawn into the frames"
            wait.until(lambda d: "fps_in" in d.find_element(By.ID, "stats").text)
            assert "source_up: true" in browser.find_element(By.ID, "stats").text
    finally:
        preview.close()
