"""The web page in a real headless chromium against the real service.

Debian's chromium and chromedriver drive the page served by the API (`server/static/`); the API,
one worker process and a redis-server run for real (the server tests' harness). The test does what
a person does: enters an API key, fills the product form, uploads generated clips (thumbnails are
made in the browser), picks a library video, submits, watches progress, plays the finished ad,
and the page is screenshotted and the screenshot checked.
"""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import pytest

from media_factory import make_shots
from test_server_harness import Service, running_service

# Shared session fixtures (redis_server, seed_library): one instance for all server test modules.
pytest_plugins = ["test_server_harness"]

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::ResourceWarning")]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1440, 1100)
SCRIPT = ["Breakfast in a hurry?", "Fresh juice in thirty seconds."]

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip("Debian chromium and chromium-driver are not installed (make system-deps)", allow_module_level=True)

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service as DriverService  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_server, seed_library):
    """API + one worker on a private copy of the seed library."""
    tmp = tmp_path_factory.mktemp("websvc")
    with running_service(tmp, redis_server, seed_library, workers=1, supervised=False, wait_workers_s=120) as svc:
        yield svc


@pytest.fixture
def browser(tmp_path):
    """A fresh headless chromium (own profile dir); chromedriver is Debian's, so Selenium Manager
    never tries to download a driver or a browser."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        service=DriverService(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log")),
        options=opts,
    )
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, cond, timeout_s: float, what: str, service: Service | None = None):
    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.25).until(lambda d: cond(d))
    except TimeoutException:
        page = driver.find_element(By.TAG_NAME, "body").text[-3000:]
        logs = service.logs() if service is not None else ""
        raise AssertionError(
            f"timed out after {timeout_s:.0f} s waiting for {what}\n--- page:\n{page}\n{logs}"
        ) from None


def _text(driver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def _fill(driver, css: str, value: str) -> None:
    el = driver.find_element(By.CSS_SELECTOR, css)
    el.clear()
    el.send_keys(value)


def _product_photo(path: Path) -> Path:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (200, 200), (240, 150, 40))
    ImageDraw.Draw(im).ellipse((40, 40, 160, 160), fill=(30, 120, 220))
    im.save(path)
    return path


def test_page_end_to_end(service, browser, tmp_path):
    d = browser
    key = service.new_key("web")
    footage = [
        make_shots(tmp_path / "kitchen.mp4", [("yuvtestsrc", 3.0), ("orange", 3.0)], size="320x240"),
        make_shots(tmp_path / "table.mp4", [("smptebars", 3.0), ("purple", 3.0)], size="320x240"),
    ]
    photo = _product_photo(tmp_path / "cup.png")

    d.get(service.base_url + "/")
    assert d.title.startswith("AutoCut")
    _wait(d, lambda d: "no key" in _text(d, "#key-status"), 20, "the page to ask for a key")

    # A wrong key is refused, and nothing of anyone's is listed.
    _fill(d, "#api-key", "ak_not-a-real-key")
    d.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    _wait(d, lambda d: _text(d, "#key-status") == "key refused", 20, "the wrong key to be refused")
    # Chromium logs the refused request as an error; that one is expected (the log is drained here).
    refused = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert refused and all("401" in m for m in refused), refused

    _fill(d, "#api-key", key)
    d.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    _wait(d, lambda d: _text(d, "#key-status") == "connected", 20, "the key to be accepted")
    assert d.execute_script("return localStorage.getItem('autocut.apiKey')") == key
    # The seed library's two videos are listed for picking.
    _wait(
        d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#library li[data-photo-id]")) == 2, 20, "the library listing"
    )

    # Submitting with no clips is refused by the page itself.
    _fill(d, "#p-name", "Juicer Cup")
    d.find_element(By.ID, "submit").click()
    assert _text(d, "#form-error") == "Upload or pick at least one clip."

    _fill(d, "#p-brand", "FreshCo")
    _fill(d, "#p-category", "kitchen")
    _fill(d, "#p-points", "juice in 30 seconds\nwashable blade")
    _fill(d, "#p-description", "A portable USB blender cup.")
    d.find_element(By.ID, "p-image").send_keys(str(photo))
    _wait(d, lambda d: _text(d, "#p-image-preview .badge") == "200×200", 30, "the product photo upload")

    d.find_element(By.ID, "clip-files").send_keys("\n".join(str(p) for p in footage))
    # Both uploads land (201) and get thumbnails drawn in the browser from a <video> frame.
    _wait(
        d,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#uploads li[data-clip-id]")) == 2,
        60,
        "the uploads to be accepted",
        service,
    )
    _wait(
        d,
        lambda d: d.execute_script(
            "const imgs = [...document.querySelectorAll('#uploads li img.thumb')];"
            "return imgs.length === 2 && imgs.every(i => i.complete && i.naturalWidth === 160);"
        ),
        30,
        "client-side thumbnails",
    )
    clip_ids = d.execute_script(
        "return [...document.querySelectorAll('#uploads li[data-clip-id]')].map(li => li.dataset.clipId)"
    )
    with service.client(key) as c:
        mine = {x["clip_id"]: x for x in c.get("/v1/clips").json()["items"]}
    assert set(clip_ids) <= set(mine) and {mine[i]["filename"] for i in clip_ids} == {"kitchen.mp4", "table.mp4"}

    # Pick library video 1 besides the two uploads.
    d.find_element(By.CSS_SELECTOR, "#library-details summary").click()
    d.find_element(By.CSS_SELECTOR, "#library li[data-photo-id='1'] input.pick").click()
    _wait(d, lambda d: _text(d, "#pool-summary").startswith("3 clips selected"), 10, "the pool summary")

    _fill(d, "#script", "\n".join(SCRIPT))
    Select(d.find_element(By.ID, "o-resolution")).select_by_value("360")
    Select(d.find_element(By.ID, "o-aspect")).select_by_value("9:16")
    _fill(d, "#o-max-duration", "12")
    _fill(d, "#o-planner", "heuristic")
    d.find_element(By.ID, "submit").click()

    _wait(
        d,
        lambda d: d.find_element(By.ID, "job").get_attribute("data-state") in ("queued", "running", "done"),
        20,
        "the job to be accepted",
        service,
    )
    job_id = _text(d, "#job-id")
    assert job_id.startswith("job_")
    # Live progress: the page shows the stage and a rising progress bar while the worker runs it.
    seen = set()

    def finished(d) -> bool:
        state = d.find_element(By.ID, "job").get_attribute("data-state")
        seen.add((state, float(d.find_element(By.ID, "job-progress").get_attribute("value"))))
        if state in ("failed", "cancelled"):
            raise AssertionError(f"job {state}: {_text(d, '#job-error')}\n{service.logs()}")
        return state == "done"

    _wait(d, finished, 240, "the edit to finish", service)
    assert any(s == "running" and 0 < p < 100 for s, p in seen), seen

    with service.client(key) as c:
        job = c.get(f"/v1/jobs/{job_id}").json()
    sent = service.store.get_job(job_id).spec["request"]
    assert sent["product"]["name"] == "Juicer Cup" and sent["product"]["image_id"].startswith("img_")
    assert sent["product"]["selling_points"] == ["juice in 30 seconds", "washable blade"]
    assert sent["script"] == SCRIPT
    assert sorted(ref.get("clip_id") or f"photo:{ref.get('photo_id')}" for ref in sent["clips"]) == sorted(
        clip_ids + ["photo:1"]
    )
    assert sent["options"]["resolution"] == 360 and sent["options"]["planner"] == "heuristic"
    (res,) = job["results"]
    assert (res["width"], res["height"]) == (360, 640)

    # The player gets the MP4 (fetched with the key) and plays it.
    _wait(
        d,
        lambda d: d.execute_script(
            "const v = document.querySelector('#variants video'); return v && v.readyState >= 3 && v.duration > 0"
        ),
        60,
        "the player to load the result",
    )
    duration = d.execute_script("return document.querySelector('#variants video').duration")
    assert duration == pytest.approx(res["duration_s"], abs=0.25)
    assert d.execute_script(
        "return [document.querySelector('#variants video').videoWidth,"
        "document.querySelector('#variants video').videoHeight]"
    ) == [360, 640]
    d.execute_script("const v = document.querySelector('#variants video'); v.muted = true; v.play();")
    _wait(
        d,
        lambda d: d.execute_script("return document.querySelector('#variants video').currentTime") > 0.5,
        30,
        "playback to advance",
    )
    d.execute_script("const v = document.querySelector('#variants video'); v.pause(); v.currentTime = 1.0;")
    _wait(
        d,
        lambda d: d.execute_script(
            "const v = document.querySelector('#variants video');return !v.seeking && v.readyState >= 2"
        ),
        10,
        "the seek",
    )

    # Downloads: MP4 + SRT + OTIO + plan JSON, as blob links named after the job.
    _wait(
        d,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#variants a.download[download]")) == 4,
        30,
        "the download links",
    )
    names = {
        a.get_attribute("data-artifact"): a.get_attribute("download")
        for a in d.find_elements(By.CSS_SELECTOR, "#variants a.download")
    }
    assert names == {
        "video": f"{job_id}-v1.mp4",
        "subtitles": f"{job_id}-v1.srt",
        "timeline": f"{job_id}-v1.otio",
        "plan": f"{job_id}-v1.plan.json",
    }
    blobs = d.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const out = {};
        Promise.all([...document.querySelectorAll('#variants a.download')].map(async (a) => {
          const r = await fetch(a.href);
          out[a.dataset.artifact] =
            a.dataset.artifact === 'video' ? (await r.arrayBuffer()).byteLength : await r.text();
        })).then(() => done(out), (e) => done({error: String(e)}));""")
    assert "error" not in blobs, blobs
    with service.client(key) as c:
        assert blobs["video"] == len(c.get(res["links"]["video"]).content)
    assert "-->" in blobs["subtitles"] and "Fresh juice" in blobs["subtitles"]
    assert json.loads(blobs["timeline"])["OTIO_SCHEMA"].startswith("Timeline")
    plan = json.loads(blobs["plan"])
    assert [s["sentence"] for s in plan["segments"]] == SCRIPT
    assert [li.text.split(" (")[0] for li in d.find_elements(By.CSS_SELECTOR, "#variants .plan-script li")] == SCRIPT

    # Recent jobs lists this edit as done and selected.
    _wait(
        d,
        lambda d: "done" in d.find_element(By.CSS_SELECTOR, f"#jobs tr[data-job-id='{job_id}']").text,
        20,
        "the recent-jobs row",
    )
    assert "selected" in d.find_element(By.CSS_SELECTOR, f"#jobs tr[data-job-id='{job_id}']").get_attribute("class")

    severe = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe

    shot = tmp_path / "web.png"
    d.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.3)
    assert d.save_screenshot(str(shot))
    _check_screenshot(d, shot)
    # The whole page as well (what docs/web.png shows): taller than the window, same width.
    size = d.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    full = d.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    (tmp_path / "web-full.png").write_bytes(base64.b64decode(full["data"]))
    from PIL import Image

    with Image.open(tmp_path / "web-full.png") as im:
        assert im.width == int(size["width"]) and im.height > WINDOW[1] * 0.9


def _check_screenshot(d, shot: Path) -> None:
    """Not blank, and the player's area shows the rendered frame (not a uniform box)."""
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")).astype(np.int16)
    h, w, _ = img.shape
    assert [w, h] == d.execute_script(
        "return [window.innerWidth * devicePixelRatio, window.innerHeight * devicePixelRatio]"
    )
    assert img.std() > 20, "the screenshot is nearly uniform"
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 500, "too few colours for a rendered page"
    rect = d.execute_script(
        "const r = document.querySelector('#variants video').getBoundingClientRect();"
        "return [r.left, r.top, r.width, r.height, devicePixelRatio]"
    )
    left, top, width, height, dpr = rect
    assert width > 100 and height > 100 and top + height <= h / dpr, f"player not fully on screen: {rect}"
    x0, y0 = int(left * dpr) + 4, int(top * dpr) + 4
    x1, y1 = int((left + width) * dpr) - 4, int((top + height) * dpr) - 40  # above the controls bar
    player = img[y0:y1, x0:x1]
    assert player.std() > 15, "the player area is uniform (no frame drawn)"
    # The frame is the 9:16 render letterboxed in the player: its middle column is not black.
    mid = player[:, player.shape[1] // 2 - 20 : player.shape[1] // 2 + 20]
    assert mid.mean() > 30, "the player's middle is black"
