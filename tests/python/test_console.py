"""The web console at /ui, driven in a real headless browser.

Debian's ``chromium`` with ``chromedriver``, through Selenium: the page loads
without console errors and shows the demo's endpoint, arms, versions and
call counts as ``/admin/status`` and ``/metrics`` give them; without a token
it is read-only (every action button disabled); with the token typed, a
version set through the console (confirmed in its dialog) moves the alias,
as ``podium alias get`` sees it, and a rollback moves it back; a refusal is
shown with the server's reason; at phone width, twenty endpoints with long
names fit without horizontal scrolling. The laptop screenshot is written to
``docs/console.png`` when ``PODIUM_UPDATE_SCREENSHOT=1`` (README shows it).

Without a browser (``scripts/setup-chromium.sh`` installs one as root) the
tests are SKIPPED with a message saying so, never passed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import numpy as np
import pytest
import requests

from conftest import MODELS_DIR, PODIUM_BIN, REGISTRATIONS, REPO, build_registry, run_podium

TOKEN = "console-test-token-" + uuid.uuid4().hex
CALLS = 40
WAIT_S = 30

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - reported by the skip below
    webdriver = None

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _no_browser_reason() -> str | None:
    if webdriver is None:
        return "Python package selenium is not installed (tests/python/requirements.txt)"
    if not CHROMIUM or not CHROMEDRIVER:
        return "chromium/chromedriver not found: run scripts/setup-chromium.sh as root"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = _no_browser_reason()
    if reason:
        print(f"\n*** CONSOLE BROWSER TESTS SKIPPED: {reason} ***\n", file=sys.stderr)
        pytest.skip(f"CONSOLE BROWSER TESTS SKIPPED: {reason}")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--no-first-run"):
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # chromium refuses to run as root otherwise
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


DEMO_CONFIG = """
[[endpoint]]
name = "fraud-ab"
model = "fraud"
experiment = "demo-fraud-ab"
sticky_key = { header = "x-user-id" }
arms = [{ alias = "champion", weight = 90 }, { alias = "challenger", weight = 10 }]
[endpoint.readout]
metric = "accuracy"
prediction_output = "label"
min_samples = 30
"""


def _fraud_calls(base: str, endpoint: str, n: int) -> None:
    rng = np.random.default_rng(7)
    with requests.Session() as s:
        for i in range(n):
            row = rng.normal(size=30).astype(np.float32).tolist()
            body = {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": row}]}
            r = s.post(f"{base}/v2/models/{endpoint}/infer", json=body,
                       headers={"x-user-id": f"user-{i}"}, timeout=30)
            assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def demo(tmp_path_factory, model_paths):
    """The demo behind an admin token, with CALLS calls made to fraud-ab."""
    reg = build_registry(tmp_path_factory.mktemp("console-registry"), REGISTRATIONS, model_paths)
    config = tmp_path_factory.mktemp("console-config") / "endpoints.toml"
    config.write_text(DEMO_CONFIG)
    with run_podium(reg, tmp_path_factory.mktemp("console-server"),
                    "--config", str(config), "--admin-token", TOKEN) as srv:
        base = f"http://{srv.url}"
        _fraud_calls(base, "fraud-ab", CALLS)
        yield srv, base


@pytest.fixture(scope="module")
def crowded(tmp_path_factory, model_paths):
    """Twenty endpoints with long names on a loopback listener without a token."""
    reg = build_registry(tmp_path_factory.mktemp("crowded-registry"), REGISTRATIONS, model_paths)
    config = tmp_path_factory.mktemp("crowded-config") / "endpoints.toml"
    config.write_text("".join(
        f'[[endpoint]]\nname = "fraud-{i:02d}-an-endpoint-name-much-longer-than-a-phone-is-wide"\n'
        f'model = "fraud"\narms = [{{ alias = "champion", weight = 50 }}, {{ alias = "challenger", weight = 50 }}]\n\n'
        for i in range(20)))
    with run_podium(reg, tmp_path_factory.mktemp("crowded-server"), "--config", str(config)) as srv:
        base = f"http://{srv.url}"
        _fraud_calls(base, "fraud-00-an-endpoint-name-much-longer-than-a-phone-is-wide", 5)
        yield srv, base


def wait(driver, what, condition, timeout=WAIT_S):
    def check(d):
        try:
            return condition(d)
        except StaleElementReferenceException:
            return False  # the page re-rendered between finding and reading
    return WebDriverWait(driver, timeout).until(check, message=f"waited {timeout}s for {what}")


def click(driver, what, css):
    """Clicks the element `css` finds, again if a refresh replaced it meanwhile."""
    def attempt(d):
        d.find_element(By.CSS_SELECTOR, css).click()
        return True
    wait(driver, f"{what} ({css}) to be clickable", attempt)


def console_errors(driver):
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def arm_text(driver, endpoint, arm, field):
    return driver.find_element(
        By.CSS_SELECTOR, f'[data-endpoint="{endpoint}"] [data-arm="{arm}"] [data-field="{field}"]').text


def requests_total(base, endpoint, arm):
    total = 0.0
    for line in requests.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith("podium_requests_total{") and f'endpoint="{endpoint}"' in line \
                and f'arm="{arm}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def alias_get(srv, model, alias) -> int:
    out = subprocess.run([str(PODIUM_BIN), "--registry", str(srv.registry), "alias", "get", model, alias],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return int(out.strip())


def confirm_dialog(driver, value=None):
    wait(driver, "the confirmation dialog", lambda d: d.find_element(By.ID, "dialog").get_attribute("open") is not None)
    if value is not None:
        field = driver.find_element(By.ID, "dialog-field-0")
        field.clear()
        field.send_keys(str(value))
    driver.find_element(By.ID, "dialog-ok").click()


def answer(driver, starts):
    """The text of the answer box once it starts with `starts`."""
    try:
        return wait(driver, f"the answer box to start with {starts!r}",
                    lambda d: (lambda t: t if t.startswith(starts) else False)(d.find_element(By.ID, "answer").text))
    except Exception:
        got = driver.execute_script("return document.getElementById('answer').textContent")
        opened = driver.execute_script("return document.getElementById('dialog').open")
        pytest.fail(f"the answer box says {got!r}, expected it to start with {starts!r} "
                    f"(dialog open: {opened}; console: {driver.get_log('browser')})")


def test_console_answers_carry_a_strict_policy(demo):
    _, base = demo
    for path, kind in (("/ui", "text/html"), ("/ui/console.js", "text/javascript"),
                       ("/ui/chart.js", "text/javascript"), ("/ui/console.css", "text/css")):
        r = requests.get(base + path, timeout=10)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith(kind), (path, r.headers)
        csp = r.headers["content-security-policy"]
        for directive in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"):
            assert directive in csp, (path, csp)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "set-cookie" not in r.headers
    # The overview mirrors the admin API's rules: no token, no status.
    assert requests.get(base + "/admin/overview", timeout=10).status_code == 401


def test_console_without_token_is_read_only(browser, crowded):
    srv, base = crowded
    browser.set_window_size(1280, 1000)
    browser.get(base + "/ui")
    wait(browser, "twenty endpoint cards",
         lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.endpoint")) == 20)
    wait(browser, "the model table", lambda d: d.find_elements(By.CSS_SELECTOR, '[data-slot="fraud@champion"]'))
    # Read in one go: the page re-renders every few seconds.
    total, enabled = browser.execute_script(
        "const b = [...document.querySelectorAll('button.action')];"
        "return [b.length, b.filter((x) => !x.disabled).length];")
    assert total >= 20 + 4 * 2, "expected weight buttons per endpoint and set/rollback per alias"
    assert enabled == 0, f"{enabled} action buttons are enabled without a token"
    assert "Read-only" in browser.find_element(By.ID, "mode").text
    assert console_errors(browser) == []


def test_console_fits_a_phone_with_twenty_long_endpoints(browser, crowded, tmp_path):
    _, base = crowded
    browser.set_window_size(390, 844)
    browser.get(base + "/ui")
    wait(browser, "twenty endpoint cards",
         lambda d: len(d.find_elements(By.CSS_SELECTOR, "article.endpoint")) == 20)
    overflow = browser.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]")
    assert overflow[0] <= overflow[1], f"the page scrolls sideways at phone width: {overflow}"
    browser.save_screenshot(str(tmp_path / "console-phone.png"))
    assert console_errors(browser) == []
    browser.set_window_size(1280, 1000)


def test_console_shows_the_demo_and_flips_and_rolls_back(browser, demo, tmp_path):
    srv, base = demo
    browser.get(base + "/ui")
    wait(browser, "the token prompt", lambda d: "needs a token" in d.find_element(By.ID, "mode").text)
    assert browser.find_elements(By.CSS_SELECTOR, "button.action") == []
    browser.get_log("browser")  # drop the expected 401s of the reads without a token
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "token-use").click()
    wait(browser, "the fraud-ab card", lambda d: d.find_elements(By.CSS_SELECTOR, '[data-endpoint="fraud-ab"]'))
    assert browser.execute_script("return location.href").endswith("/ui"), "the token must never be in the URL"

    # The numbers match the admin API and /metrics.
    status = requests.get(base + "/admin/status", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()
    for arm in ("champion", "challenger"):
        slot = next(s for s in status["slots"] if s["model"] == "fraud" and s["alias"] == arm)
        head = browser.find_element(By.CSS_SELECTOR, f'[data-endpoint="fraud-ab"] [data-arm="{arm}"] h4').text
        assert head.startswith(f"{arm} → v{slot['serving_version']}"), head
        want = requests_total(base, "fraud-ab", arm)
        assert int(arm_text(browser, "fraud-ab", arm, "calls")) == want
    assert requests_total(base, "fraud-ab", "champion") + requests_total(base, "fraud-ab", "challenger") == CALLS
    assert arm_text(browser, "fraud-ab", "champion", "weight") == "90.0%"
    assert "Not enough labelled calls" in browser.find_element(By.CSS_SELECTOR, '[data-endpoint="fraud-ab"] .readout').text
    wait(browser, "the history of the demo's aliases",
         lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history-table tbody tr")) >= 4)
    if os.environ.get("PODIUM_UPDATE_SCREENSHOT") == "1":
        browser.save_screenshot(str(REPO / "docs" / "console.png"))
    browser.save_screenshot(str(tmp_path / "console.png"))

    # Set fraud@champion to version 2 through the console.
    assert alias_get(srv, "fraud", "champion") == 1
    click(browser, "Set version of fraud@champion", 'button[data-key="set:fraud@champion"]')
    confirm_dialog(browser, 2)
    answer(browser, "Done: fraud@champion now serves version 2 (was 1)")
    assert alias_get(srv, "fraud", "champion") == 2
    wait(browser, "the card to show v2",
         lambda d: d.find_element(By.CSS_SELECTOR, '[data-endpoint="fraud-ab"] [data-arm="champion"] h4').text.startswith("champion → v2"))

    # Cancelling changes nothing.
    click(browser, "Roll back fraud@champion", 'button[data-key="rollback:fraud@champion"]')
    wait(browser, "the dialog", lambda d: d.find_element(By.ID, "dialog").get_attribute("open") is not None)
    browser.find_element(By.ID, "dialog-cancel").click()
    assert alias_get(srv, "fraud", "champion") == 2

    # Roll back through the console.
    click(browser, "Roll back fraud@champion", 'button[data-key="rollback:fraud@champion"]')
    confirm_dialog(browser)
    answer(browser, "Done: fraud@champion now serves version 1 (was 2)")
    assert alias_get(srv, "fraud", "champion") == 1
    assert console_errors(browser) == [], "console errors before any refusal"

    # A refusal is shown with the server's reason.
    click(browser, "Promote on fraud-ab", 'button[data-key="promote:fraud-ab"]')
    confirm_dialog(browser)
    text = answer(browser, "Refused (HTTP 409)")
    assert "challenger" in text and len(text) > len("Refused (HTTP 409): "), text
    assert alias_get(srv, "fraud", "champion") == 1
