"""The report in a real browser (headless Chromium): its script runs, the readiness table and a
highlighted difference are there, the URL filters work, and the hostile recorded body did not
execute. Skipped, with the reason, where no Chromium is installed."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_data import HOSTILE_ID, scenario, write_jsonl

from harness.report import build_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 90


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        "no headless Chromium found (looked for "
        + ", ".join(BROWSERS)
        + "); install it with `apt-get install -y chromium` to run the browser tests"
    )


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


class Dom(HTMLParser):
    """The dumped DOM's elements with their attributes, and its text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def tags(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.elements if name == tag]


@pytest.fixture(scope="module")
def browser() -> str:
    return _browser()


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    data = write_jsonl(
        tmp / "exchanges.jsonl",
        scenario(600, drifts=("fee-rounding", "amount-precision"), hostile=True),
    )
    out = tmp / "report.html"
    build_report([data], out)
    return out


def _dump(browser: str, url: str, profile: Path) -> Dom:
    done = _chromium(browser, profile, "--dump-dom", url)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "<html" in done.stdout, done.stderr[-2000:]
    return Dom(done.stdout)


def test_report_runs_in_chromium_and_hostile_content_does_not(browser, report, tmp_path):
    dom = _dump(browser, report.as_uri(), tmp_path / "profile")
    html = dom.tags("html")[0]
    assert html.get("data-js") == "ready", "the report's own script did not run"
    assert [a for a in dom.tags("table") if a.get("id") == "readiness"]
    statuses = {a["id"]: a["data-status"] for a in dom.tags("tr") if a.get("data-status")}
    assert statuses["group-backtest"] == "not ready" and statuses["group-trade"] == "not ready"
    assert statuses["group-data"] == "ready"
    assert [a for a in dom.tags("span") if a.get("class") == "l m-diff"]
    # The hostile exchange is on the page, as text; nothing it carried became an element or ran.
    text = "".join(dom.text)
    assert HOSTILE_ID in text
    assert "<script>window.__pwned=1</script>" in text
    assert '<img src=x onerror="window.__pwned=1">' in text
    assert not [a for a in dom.tags("p") if a.get("id") == "pwned"], "hostile content executed"
    assert not dom.tags("img") and not dom.tags("textarea")
    assert len(dom.tags("script")) == 1
    assert not [k for _, attrs in dom.elements for k in attrs if k.startswith("on")]


def test_url_filters_hide_other_groups(browser, report, tmp_path):
    dom = _dump(browser, report.as_uri() + "?group=trade&verdict=failing", tmp_path / "profile")
    rows = [a for a in dom.tags("tr") if "data-count" in a]
    shown = [a["data-route"] for a in rows if "hidden" not in a]
    assert shown == ["POST /api/trades/orders"]
    details = [a for a in dom.tags("article") if "hidden" not in a]
    assert [a["data-group"] for a in details] == ["trade"]


def test_screenshot_renders(browser, report, tmp_path):
    shot = tmp_path / "report.png"
    done = _chromium(
        browser,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1400,2000",
        report.as_uri(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one
