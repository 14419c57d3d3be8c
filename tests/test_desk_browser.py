"""The desk as a person uses it, in a real headless Chromium (Debian's chromium + chromium-driver, installed
by `make browser`): a district officer sees only her district; the banking regulator opens the riskiest
P2P platform and sees its money drawn, works an alert to closed, and the administrator finds it in the
audit log; the problem-platform CSV downloaded from the page matches the API.

Chromium missing is a failure, not a skip. Screenshots of every page are saved under the test's
temporary directory (the path is printed; `pytest -s` shows it).
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from detectors.assess import Assessor
from graph.ledger import Ledger
from ingest.dead_letters import MemoryDeadLetters
from ingest.pipeline import Pipeline
from ingest.sources import FileSource
from service.auth import create_key
from service.store import Store
from tests.servers import free_port, service_env, start, stop

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def desk(small_world_dir, tmp_path_factory):
    """`fundwatch serve` over a store filled by replaying the small world; one key per person."""
    tmp = tmp_path_factory.mktemp("desk-browser")
    db = str(tmp / "store.db")
    store = Store(db)
    Pipeline(FileSource(small_world_dir), Ledger(), Assessor(), [store], MemoryDeadLetters()).run()
    _, platforms = store.platforms(limit=1000)
    county = next(p for p in platforms if p["kind"] == "P2P_LENDING")["jurisdiction"]
    keys = {"district": create_key(store, name="属地政府 district officer", role="district",
                                   jurisdictions=[county])[0],
            "banking": create_key(store, name="银监分局 officer", role="regulator",
                                  departments=["BANKING_REGULATOR"])[0],
            "admin": create_key(store, name="系统管理员 ops", role="admin")[0]}
    store.close()
    port = free_port()
    proc = start(["serve", "--port", str(port), "--db", db], service_env(tmp, db), port)
    shots = tmp / "screenshots"
    shots.mkdir()
    print(f"\ndesk screenshots: {shots}")
    try:
        yield {"base": f"http://127.0.0.1:{port}", "keys": keys, "county": county, "shots": shots, "tmp": tmp}
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def browser(desk):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(f"{CHROMIUM} or {CHROMEDRIVER} missing: `make browser` installs Debian's chromium and "
                    f"chromium-driver (the desk's browser test does not skip)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = desk["tmp"] / "chromium-profile"
    downloads = desk["tmp"] / "downloads"
    downloads.mkdir()
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# ---- helpers: what a person does --------------------------------------------------------------------------
def api(desk: dict[str, Any], who: str, path: str, method: str = "GET", body: Any = None) -> Any:
    req = urllib.request.Request(desk["base"] + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {desk['keys'][who]}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        raw = r.read()
        return json.loads(raw) if r.headers.get_content_type() == "application/json" else raw


def wait(driver: Any, pred: Any, what: str, timeout_s: float = 20) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = pred()
            if got:
                return got
        except Exception as exc:  # the page is still drawing
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} on {driver.current_url}: {last}")


def css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def click(driver: Any, selector: str, what: str) -> None:
    """Click the first match, finding it again if the page re-rendered it between the find and the click (the
    inbox re-renders its rows when an alert's state arrives: CI failed on a stale row once under load)."""
    from selenium.common.exceptions import StaleElementReferenceException

    def once() -> bool:
        try:
            css(driver, selector)[0].click()
            return True
        except (StaleElementReferenceException, IndexError):
            return False
    wait(driver, once, what)


def sign_in(driver: Any, desk: dict[str, Any], who: str) -> None:
    driver.get(desk["base"] + "/desk/login")
    box = wait(driver, lambda: css(driver, "#key-input"), "the sign-in form")[0]
    box.send_keys(desk["keys"][who])
    css(driver, "#sign-in")[0].click()
    wait(driver, lambda: "/desk/login" not in driver.current_url and css(driver, "#whoami")[0].text, "signed in")


def shot(driver: Any, desk: dict[str, Any], name: str) -> Path:
    """The whole page: the window is made as tall as the document for the picture."""
    time.sleep(0.3)  # pictures fetched after the page's text
    height = driver.execute_script("return Math.max(document.documentElement.scrollHeight, "
                                   "document.body.scrollHeight)")
    driver.set_window_size(1400, max(800, min(int(height) + 20, 8000)))
    path = desk["shots"] / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    assert path.stat().st_size > 10_000, path  # not a blank page
    return path


def ranking_rows(driver: Any) -> list[Any]:
    return css(driver, "#ranking-table tbody tr[data-platform]")


# ---- the people ------------------------------------------------------------------------------------------
def test_a_district_officer_sees_only_her_district(browser, desk):
    d = browser
    sign_in(d, desk, "district")
    want = api(desk, "district", "/v1/platforms?limit=1000")
    assert want["total"] > 0 and all(p["jurisdiction"] == desk["county"] for p in want["items"])
    rows = wait(d, lambda: ranking_rows(d), "the ranking")
    assert {r.get_attribute("data-jurisdiction") for r in rows} == {desk["county"]}
    assert [r.get_attribute("data-platform") for r in rows] == [p["platform_id"] for p in want["items"]][:25]
    assert f"({want['total']})" in css(d, "#ranking-total")[0].text
    assert "属地政府" in css(d, "#whoami")[0].text and desk["county"] in css(d, "#whoami")[0].text
    assert css(d, "svg.spark polyline"), "sparklines drawn"
    shot(d, desk, "01-district-ranking-zh")
    # a platform outside the district answers like a missing one
    other = api(desk, "banking", "/v1/platforms?limit=1000")["items"]
    outside = next(p for p in other if p["jurisdiction"] != desk["county"])
    d.get(desk["base"] + "/desk/platform/" + outside["platform_id"])
    wait(d, lambda: css(d, "#not-found"), "the not-found answer")
    assert outside["name"] not in d.page_source
    # the inventory report counts her district only
    d.get(desk["base"] + "/desk/reports")
    wait(d, lambda: css(d, "#inventory-totals") and css(d, "#key-targets table, #key-targets p"), "the reports")
    juris = [r.get_attribute("data-key") for r in css(d, "#inventory .inventory-table")[0].find_elements("css selector",
                                                                                                     "tbody tr")]
    assert juris == [desk["county"]]
    css(d, "#keep-report")[0].click()
    wait(d, lambda: "#" in css(d, "#report-msg")[0].text, "the report kept")
    shot(d, desk, "02-district-reports-zh")


def test_the_language_switches(browser, desk):
    d = browser
    sign_in(d, desk, "district")
    wait(d, lambda: ranking_rows(d), "the ranking")
    assert css(d, "#nav-ranking")[0].text == "风险排名"
    css(d, "#lang-toggle")[0].click()
    wait(d, lambda: css(d, "#nav-ranking")[0].text == "Ranking", "English")
    wait(d, lambda: ranking_rows(d), "the ranking in English")
    assert "district government" in css(d, "#whoami")[0].text
    shot(d, desk, "03-district-ranking-en")
    css(d, "#lang-toggle")[0].click()
    wait(d, lambda: css(d, "#nav-ranking")[0].text == "风险排名", "Chinese again")


def test_the_banking_regulator_reads_the_riskiest_p2p_file_with_its_money_drawn(browser, desk):
    from selenium.webdriver.support.ui import Select

    d = browser
    sign_in(d, desk, "banking")
    wait(d, lambda: ranking_rows(d), "the ranking")
    Select(css(d, "#f-kind")[0]).select_by_value("P2P_LENDING")
    css(d, "#apply")[0].click()
    p2p = api(desk, "banking", "/v1/platforms?kind=P2P_LENDING&limit=1000")["items"]
    wait(d, lambda: [r.get_attribute("data-platform") for r in ranking_rows(d)] ==
         [p["platform_id"] for p in p2p][:25], "the P2P platforms, riskiest first")
    shot(d, desk, "04-banking-ranking-p2p")
    riskiest = p2p[0]
    ranking_rows(d)[0].find_element("css selector", "a").click()
    wait(d, lambda: css(d, "#platform-file"), "the platform's file")
    assert riskiest["name"] in css(d, "h1")[0].text
    wait(d, lambda: css(d, "#history-chart svg .fw-band"), "the score-history chart")
    assert css(d, "#history-chart svg .fw-score-now")
    assert riskiest["detectors"], "the riskiest P2P platform has findings"
    with_graph = wait(d, lambda: [box for box in css(d, ".finding")
                                  if box.find_elements("css selector", "svg .fw-edge")], "an evidence graph drawn")
    box = with_graph[0]
    det = box.get_attribute("data-detector")
    graph = api(desk, "banking", f"/v1/platforms/{riskiest['platform_id']}/findings/{det}/graph")["graph"]
    accounts = [n for n in graph["nodes"] if n["kind"] == "account"]
    assert len(box.find_elements("css selector", "svg .fw-node")) == len(accounts)
    edges = box.find_elements("css selector", "svg .fw-edge")
    assert len(edges) == len([e for e in graph["edges"] if e["amount_lifetime"] > 0])
    assert edges[0].find_element("css selector", "title").get_attribute("textContent")  # the hover text
    assert any("%" in (e.get_attribute("data-origins") or "") for e in edges), "traced origins on the arrows"
    txs = wait(d, lambda: box.find_elements("css selector", ".tx-list code.tx"), "the tx ids listed")
    assert {t.text for t in txs} >= set(graph["edges"][0]["tx_ids"])
    txs[0].click()  # the clipboard write is a promise: under load it settles after the click returns
    wait(d, lambda: d.execute_script("return window.__fwLastCopied") == txs[0].text, "the tx id copied")
    assert css(d, "#disposition")[0].text and css(d, "#leads .chip")
    shot(d, desk, "05-banking-platform-file")
    d.get(desk["base"] + "/desk/print/" + riskiest["platform_id"])
    wait(d, lambda: css(d, "#platform-file .finding svg"), "the printable file")
    assert css(d, "#print-now") and not css(d, "#print-link")
    shot(d, desk, "06-banking-printable-file")


def test_an_alert_is_worked_to_closed_in_the_page_and_the_audit_log_shows_it(browser, desk):
    from selenium.webdriver.support.ui import Select

    d = browser
    sign_in(d, desk, "banking")
    d.get(desk["base"] + "/desk/alerts")
    rows = wait(d, lambda: css(d, "#alerts-table tbody tr[data-alert]"), "the alert inbox")
    listed = api(desk, "banking", "/v1/alerts?limit=1000")["items"]
    assert [r.get_attribute("data-alert") for r in rows] == [a["alert_id"] for a in listed]
    alert_id = next(a["alert_id"] for a in listed if a["state"] == "new")
    row_sel = f'#alerts-table tr[data-alert="{alert_id}"]'
    shot(d, desk, "07-banking-alert-inbox")
    d.execute_script("window.__sameDocument = true")
    click(d, row_sel + " .act-ack", "the acknowledge button")
    wait(d, lambda: css(d, row_sel)[0].get_attribute("data-state") == "acknowledged", "acknowledged")
    click(d, row_sel + " .act-close", "the close button")
    form = wait(d, lambda: css(d, row_sel + " .close-form"), "the closing form")[0]
    Select(form.find_element("css selector", "select.resolution")).select_by_value("RECTIFIED")
    form.find_element("css selector", "textarea.note").send_keys("整改完成 rectified on site")
    form.find_element("css selector", ".confirm-close").click()
    wait(d, lambda: css(d, row_sel)[0].get_attribute("data-state") == "closed", "closed")
    assert d.execute_script("return window.__sameDocument") is True  # worked in the page, no reload
    shot(d, desk, "08-banking-alert-closed")
    a = api(desk, "banking", f"/v1/alerts/{alert_id}")
    assert a["state"] == "closed" and a["resolution"] == "RECTIFIED"
    assert [t["to_state"] for t in a["transitions"]] == ["acknowledged", "closed"]
    # new alert events arrive live: another desk moves an alert, this page shows it without a reload
    other = next(x["alert_id"] for x in listed if x["state"] == "new" and x["alert_id"] != alert_id)
    api(desk, "banking", f"/v1/alerts/{other}/transitions", "POST", {"to": "investigating"})
    wait(d, lambda: css(d, f'#alerts-table tr[data-alert="{other}"]')[0].get_attribute("data-state")
         == "investigating", "the live update")
    assert d.execute_script("return window.__sameDocument") is True
    # the administrator finds both changes in the audit log
    sign_in(d, desk, "admin")
    d.get(desk["base"] + "/desk/audit")
    wait(d, lambda: css(d, f'#audit-table tr[data-action="alert.closed"][data-object="alert:{alert_id}"]'),
         "the closing in the audit log")
    assert css(d, f'#audit-table tr[data-action="alert.acknowledged"][data-object="alert:{alert_id}"]')
    assert "银监分局" in css(d, f'#audit-table tr[data-action="alert.closed"][data-object="alert:{alert_id}"]')[0].text
    shot(d, desk, "09-admin-audit-log")


def test_the_ranking_updates_live(browser, desk):
    d = browser
    sign_in(d, desk, "banking")
    wait(d, lambda: ranking_rows(d), "the ranking")
    wait(d, lambda: "on" in css(d, "#live-status")[0].get_attribute("class"), "the live stream connected")
    d.execute_script("window.__sameDocument = true")
    listed = api(desk, "banking", "/v1/alerts?state=new&limit=1000")["items"]
    assert listed, "an alert left to move"
    api(desk, "banking", f"/v1/alerts/{listed[0]['alert_id']}/transitions", "POST", {"to": "acknowledged"})
    pid = listed[0]["platform_id"]
    wait(d, lambda: "fresh" in (css(d, f'#ranking-table tr[data-platform="{pid}"]')[0].get_attribute("class") or ""),
         "the ranking redrawn from the stream")
    assert d.execute_script("return window.__sameDocument") is True


def test_the_problem_csv_downloaded_from_the_page_matches_the_api(browser, desk):
    d = browser
    sign_in(d, desk, "banking")
    d.get(desk["base"] + "/desk/reports")
    wait(d, lambda: css(d, "#inventory-totals") and css(d, "#key-targets-table"), "the reports")
    shot(d, desk, "10-banking-reports")
    target = d.downloads / "problem-platforms.csv"
    target.unlink(missing_ok=True)
    css(d, "#download-csv")[0].click()
    wait(d, lambda: target.exists() and target.stat().st_size > 0, "the CSV downloaded")
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8-sig"))))
    want = [p for tier in ("CRITICAL", "HIGH") for p in
            api(desk, "banking", f"/v1/platforms?tier={tier}&limit=1000")["items"]]
    want.sort(key=lambda p: (-p["score"], p["platform_id"]))
    assert want, "the banking regulator has problem platforms to list"
    assert [r["platform_id"] for r in rows] == [p["platform_id"] for p in want]
    for r, p in zip(rows, want):
        assert (r["name"], r["tier"], r["jurisdiction"], r["kind"]) == (p["name"], p["tier"], p["jurisdiction"],
                                                                       p["kind"])
        assert float(r["score"]) == pytest.approx(p["score"])
    # the page's preview lists the same platforms
    assert [r.get_attribute("data-platform") for r in css(d, "#problem-preview tr[data-platform]")] == \
        [p["platform_id"] for p in want]
