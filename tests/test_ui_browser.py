"""The dashboard in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by selenium,
against a real mock on a free port: jobs appear as they are submitted, a job is failed and one completed from
its page (checked over the API), and the gallery fits a phone's width. Screenshots go to
``test-artifacts/screenshots/`` (gitignored) for people to look at.

Skipped when the browser, its driver or selenium is missing, unless ``CI`` is set: then that is a failure.
Selenium Manager never runs (the driver's path is given, and ``SE_OFFLINE`` is set besides), so nothing is
downloaded.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest
import requests

from sd35_twin.mockserver.config import MockConfig
from sd35_twin.mockserver.server import start

CHROMIUM = os.environ.get("SD35_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SD35_CHROMEDRIVER", "/usr/bin/chromedriver")
SHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
KEY = {"API-Key": "browser-key-42"}
# Seconds any one condition may take: a wait ends as soon as its condition holds, so a generous limit costs a
# passing run nothing and keeps a loaded machine (a headless Chromium on 2 busy cores) from failing it.
WAIT = 30
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}

PROMPTS = ["a red fox in fresh snow, golden hour, 35mm", "<script>alert(1)</script> lighthouse at dusk",
           "isometric city block, pastel colours, tiny people", "portrait of an astronaut cat, studio lighting",
           "misty pine forest, volumetric light", "a bowl of ramen, top-down food photography"]


def _missing() -> str | None:
    if not (Path(CHROMIUM).is_file() or shutil.which("chromium")):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
    if not Path(CHROMEDRIVER).is_file():
        return f"no chromedriver at {CHROMEDRIVER} (apt-get install chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


MISSING = _missing()
if MISSING is not None:
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and the browser test cannot run: {MISSING}", pytrace=False)
    pytest.skip(MISSING, allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def mock():
    running = start(MockConfig(lifecycle="manual", seed=77))
    yield running
    running.close()


@pytest.fixture(scope="module")
def browser():
    os.environ["SE_OFFLINE"] = "true"      # belt and braces: Selenium Manager is skipped anyway (the path is given)
    os.environ["SE_AVOID_STATS"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-extensions", "--no-first-run",
                 "--window-size=1440,1000", "--hide-scrollbars", "--force-color-profile=srgb"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    dark(driver)
    yield driver
    driver.quit()


@pytest.fixture
def fresh(mock):
    """The module's mock, emptied, with manual lifecycle: jobs stay PENDING until the dashboard acts."""
    requests.post(f"{mock.url}/__mock__/reset", timeout=10).raise_for_status()
    requests.patch(f"{mock.url}/__mock__/config", json={"lifecycle": "manual"}, timeout=10).raise_for_status()
    return mock


def dark(driver) -> None:
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                           {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})


def submit(mock, prompt: str, **extra) -> str:
    body = {"prompt": prompt, "negative_prompt": "", "num_inference_steps": 4, "samples": 1, "guidance_scale": 0,
            "width": 512, "height": 512, **extra}
    answer = requests.post(f"{mock.url}/sd3_5/v1", json=body, headers=KEY, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


def status(mock, job_id: str) -> dict:
    return requests.get(f"{mock.url}/sd3_5/v1/status/{job_id}", headers=KEY, timeout=10).json()


def wait(driver, condition, timeout: float = WAIT):
    """Until ``condition(driver)`` is truthy; a DOM swapped by the page's refresh meanwhile is retried."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition)


# The page swaps its #main for a fresh copy every 2 s unless a form is being edited (dashboard.js), so an
# element found in one call may be gone by the next: every use below finds its element in the same retried
# step (StaleElementReferenceException is retried by ``wait``), never a reference kept from an earlier call.

def click(driver, css: str) -> None:
    """Click what ``css`` finds, found again if the page's refresh replaced it meanwhile."""
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, css).click() or True)


def type_into(driver, css: str, text: str, *, clear: bool = False) -> None:
    """Type ``text`` into what ``css`` finds (emptied first with ``clear``). Clearing blurs the field, so a
    refresh may swap it before the keys go in: then the whole step runs again on the new field. Once a key is
    in, the page holds its refreshes (the field is focused and edited)."""
    def step(d):
        field = d.find_element(By.CSS_SELECTOR, css)
        if clear:
            field.clear()
        field.send_keys(text)
        return True
    wait(driver, step)


def read(driver, get):
    """``get(driver)``'s value, read again if a refresh replaced an element it was reading (the value may be
    falsy: it is wrapped so that ``wait`` returns at once)."""
    return wait(driver, lambda d: (get(d),))[0]


def shot(driver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def tiles(driver) -> dict[str, str]:
    return {t.get_attribute("data-job-id"): t.get_attribute("data-status")
            for t in driver.find_elements(By.CSS_SELECTOR, ".gallery .tile")}


def thumbnail_loaded(driver, job_id: str) -> bool:
    return driver.execute_script(
        "const img = document.querySelector(`.tile[data-job-id='${arguments[0]}'] img`);"
        "return !!img && img.complete && img.naturalWidth > 0;", job_id)


def test_jobs_appear_and_one_is_failed_from_its_page(browser, fresh):
    ids = [submit(fresh, p, batch_id=f"batch-{i % 2}") for i, p in enumerate(PROMPTS[:4])]
    requests.post(f"{fresh.url}/__mock__/jobs/{ids[0]}/complete", timeout=10).raise_for_status()
    requests.post(f"{fresh.url}/__mock__/jobs/{ids[2]}/complete", timeout=10).raise_for_status()
    browser.get(f"{fresh.url}/__mock__/ui")
    wait(browser, lambda d: set(tiles(d)) == set(ids))
    late = [submit(fresh, p) for p in PROMPTS[4:]]  # after the page loaded: its refresh shows them
    wait(browser, lambda d: set(tiles(d)) == set(ids + late))
    wait(browser, lambda d: thumbnail_loaded(d, ids[0]) and thumbnail_loaded(d, ids[2]))
    assert browser.find_elements(By.XPATH, "//*[contains(text(), '<script>alert(1)</script>')]")  # shown as text
    shot(browser, "desktop-gallery")

    target = ids[1]
    click(browser, f".tile[data-job-id='{target}'] a.thumb")
    wait(browser, lambda d: d.find_element(By.ID, "job-status").text == "PENDING")
    click(browser, "#fail-box summary")
    click(browser, "#fail-error")  # focused: the page holds its refreshes from now on
    type_into(browser, "#fail-error", "nsfw: refused by the safety checker")
    click(browser, "#fail-submit")
    wait(browser, lambda d: d.find_element(By.ID, "job-status").text == "FAILURE")
    assert "nsfw: refused by the safety checker" in read(browser, lambda d: d.find_element(By.ID, "job-error").text)
    assert status(fresh, target) == {"status": "FAILURE", "id": target, "error": "nsfw: refused by the safety checker",
                                     "batch_id": "batch-1"}
    shot(browser, "desktop-job-failed")


def test_a_job_is_completed_from_its_page_and_its_thumbnail_appears(browser, fresh):
    job_id = submit(fresh, PROMPTS[0], batch_id="complete-me", webhook="http://127.0.0.1:9/hook")
    for prompt in PROMPTS[1:3]:
        submit(fresh, prompt)
    browser.get(f"{fresh.url}/__mock__/ui/job/{job_id}")
    click(browser, "#complete")
    wait(browser, lambda d: d.find_element(By.ID, "job-status").text == "SUCCESS")
    wait(browser, lambda d: d.execute_script(
        "const img = document.querySelector('.images img'); return !!img && img.complete && img.naturalWidth > 0"))
    assert status(fresh, job_id)["status"] == "SUCCESS"
    wait(browser, lambda d: "Webhook attempts" in d.page_source and d.find_elements(By.CSS_SELECTOR, "table.log tbody tr"))
    shot(browser, "desktop-job")
    browser.get(f"{fresh.url}/__mock__/ui")
    wait(browser, lambda d: tiles(d).get(job_id) == "SUCCESS" and thumbnail_loaded(d, job_id))


def test_controls_add_and_clear_a_fault_and_a_rule(browser, fresh):
    submit(fresh, PROMPTS[0])
    browser.get(f"{fresh.url}/__mock__/ui/controls")
    click(browser, "#add-fault summary")
    click(browser, "#add-fault [name=status]")
    type_into(browser, "#add-fault form [name=status]", "503")
    type_into(browser, "#add-fault form [name=times]", "2")
    click(browser, "#add-fault form button[type=submit]")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#faults table tbody tr"))
    assert requests.get(f"{fresh.url}/__mock__/faults", timeout=10).json()["faults"][0]["status"] == 503

    wait(browser, lambda d: "Loading" not in d.find_element(By.ID, "rules").text)
    rules_available = "unavailable" not in read(browser, lambda d: d.find_element(By.ID, "rules").text)
    if rules_available:  # /__mock__/rules exists on this mock: add a refused rule, then a good one
        click(browser, "#add-rule summary")
        click(browser, "#add-rule textarea")
        type_into(browser, "#add-rule textarea", '{"match": {"batch_id": "b1"}, "outcome": "MAYBE"}')
        click(browser, "#add-rule button[type=submit]")
        refusal = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#add-rule .result").text)
        assert refusal.startswith("outcome: "), refusal  # the error body's field and message
        type_into(browser, "#add-rule textarea", clear=True, text='{"match": {"batch_id": "b1", '
                  '"prompt_contains": "fox"}, "outcome": "FAILURE", "error": "nsfw", "times": 2}')
        click(browser, "#add-rule button[type=submit]")
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#rules table tbody tr"))
        assert len(requests.get(f"{fresh.url}/__mock__/rules", timeout=10).json()["rules"]) == 1
    shot(browser, "desktop-controls")
    if rules_available:
        click(browser, "#rules tbody button")
        wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, "#rules table tbody tr"))
        assert requests.get(f"{fresh.url}/__mock__/rules", timeout=10).json()["rules"] == []
    click(browser, "#faults form[data-method=DELETE] button")
    wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, "#faults table tbody tr"))
    assert requests.get(f"{fresh.url}/__mock__/faults", timeout=10).json()["faults"] == []


def test_the_gallery_and_a_job_fit_a_phone(browser, fresh):
    ids = [submit(fresh, p, batch_id="a-rather-long-batch-identifier-without-spaces-" * 2) for p in PROMPTS[:5]]
    for job_id in ids[:3]:
        requests.post(f"{fresh.url}/__mock__/jobs/{job_id}/complete", timeout=10).raise_for_status()
    requests.post(f"{fresh.url}/__mock__/jobs/{ids[3]}/fail", json={"error": "x" * 300}, timeout=10)
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    try:
        browser.get(f"{fresh.url}/__mock__/ui")
        wait(browser, lambda d: set(tiles(d)) == set(ids) and all(thumbnail_loaded(d, i) for i in ids[:3]))
        fits = "return [document.documentElement.scrollWidth, window.innerWidth]"
        width, inner = browser.execute_script(fits)
        assert inner == PHONE["width"] and width <= inner, (width, inner)
        shot(browser, "phone-gallery")
        for path in (f"/__mock__/ui/job/{ids[0]}", "/__mock__/ui/journal", "/__mock__/ui/controls",
                     "/__mock__/ui/webhooks"):
            browser.get(fresh.url + path)
            wait(browser, lambda d: d.find_element(By.ID, "main"))
            width, inner = browser.execute_script(fits)
            assert width <= inner, (path, width, inner)
        browser.get(f"{fresh.url}/__mock__/ui/job/{ids[0]}")
        wait(browser, lambda d: d.execute_script(
            "const img = document.querySelector('.images img'); return !!img && img.naturalWidth > 0"))
        shot(browser, "phone-job")
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_the_page_refreshes_itself_but_not_while_typing(browser, fresh):
    browser.get(f"{fresh.url}/__mock__/ui")
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".empty"))
    click(browser, "[name=batch_id]")
    type_into(browser, "[name=batch_id]", "typing")
    submit(fresh, PROMPTS[0])
    wait(browser, lambda d: d.find_element(By.ID, "live").text == "paused")  # a refresh came and held back
    assert read(browser, lambda d: d.find_element(By.NAME, "batch_id").get_attribute("value")) == "typing"
    assert not read(browser, tiles)
    wait(browser, lambda d: d.find_element(By.NAME, "batch_id").clear() or True)
    click(browser, "h1")  # leave the field: refreshing resumes
    wait(browser, lambda d: len(tiles(d)) == 1)


def test_an_element_found_before_a_refresh_is_stale_after_it(browser, fresh):
    """Why every step above finds its element anew: a refresh replaces #main, and a reference kept from before
    it is stale (the known flake: clear() blurred a field, a refresh came, send_keys hit the old one)."""
    browser.get(f"{fresh.url}/__mock__/ui")
    kept = wait(browser, lambda d: d.find_element(By.NAME, "batch_id"))
    browser.execute_script("document.dispatchEvent(new Event('visibilitychange'))")  # the page refreshes now

    def stale(_driver) -> bool:
        try:
            kept.is_enabled()
        except StaleElementReferenceException:
            return True
        return False

    wait(browser, stale)
    with pytest.raises(StaleElementReferenceException):
        kept.send_keys("lost")
    type_into(browser, "[name=batch_id]", "typed", clear=True)
    assert read(browser, lambda d: d.find_element(By.NAME, "batch_id").get_attribute("value")) == "typed"
