"""Open an HTML file in headless Chromium as a person would, and say what is wrong with it.

Debian's chromium and chromium-driver (scripts/setup.sh installs them) through selenium. Used by the report
tests; a missing browser is an error with the fix, never a skip.
"""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SETUP_HINT = "install them with `bash scripts/setup.sh` (Debian's chromium and chromium-driver, pip's selenium)"
LOAD_TIMEOUT_S = 30
WINDOW = (1280, 900)


def _driver():  # -> selenium.webdriver.Chrome
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        raise RuntimeError(f"headless browser check: {', '.join(missing)} missing; {SETUP_HINT}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        raise RuntimeError(f"headless browser check: selenium is not importable ({exc}); {SETUP_HINT}") from None
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


def browser_problems(html_path: Path, screenshot: Path | None = None) -> list[str]:
    """Problems a person would see opening `html_path`: console errors, images that did not load, no image.

    With `screenshot`, a PNG of the whole page (its full height) is written there.
    """
    from selenium.webdriver.support.ui import WebDriverWait

    path = Path(html_path).resolve()
    if not path.is_file():
        return [f"{path}: no such file"]
    driver = _driver()
    problems: list[str] = []
    try:
        driver.set_page_load_timeout(LOAD_TIMEOUT_S)
        driver.get(path.as_uri())
        WebDriverWait(driver, LOAD_TIMEOUT_S).until(
            lambda d: d.execute_script(
                "return document.readyState === 'complete' && "
                "Array.from(document.images).every(i => i.complete)"))
        for entry in driver.get_log("browser"):
            if entry.get("level") in ("SEVERE", "ERROR"):
                problems.append(f"console {entry.get('level')}: {entry.get('message')}")
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt || i.src.slice(0, 60), i.naturalWidth, "
            "i.naturalHeight]);")
        if not images:
            problems.append("the page shows no image")
        for alt, width, height in images:
            if not (width and height and width > 0 and height > 0):
                problems.append(f"image {alt!r} did not load ({width}x{height})")
        if screenshot is not None:
            full_height = int(driver.execute_script(
                "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight);"))
            driver.set_window_size(WINDOW[0], max(WINDOW[1], full_height + 40))
            target = Path(screenshot)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not driver.save_screenshot(str(target)):
                problems.append(f"the screenshot {target} could not be written")
    finally:
        driver.quit()
    return problems

