"""``/admin`` in headless Chromium against a real ``monolith serve --workers 2``.

An operator signs in with the admin token, sees the numbers, the plots, the top statements
and a failed job; fixes the cause and retries the job with its button (it runs and
succeeds); discards another one. The page runs under a CSP that forbids inline script, so a
console without errors also says the page needs nothing but its own assets. A full-page
screenshot is left in ``test-output/admin.png`` for a person to look at.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import ADMIN_TOKEN, ServerProcess, base_env
from tests.services import require

pytestmark = [pytest.mark.slow, pytest.mark.chromium]

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("admin") / "var"
    data_dir.mkdir()
    env = base_env(data_dir, MONOLITH_JOBS_MODULES="tests.jobs_app")
    with ServerProcess(data_dir, workers=2, env=env) as proc:
        yield proc


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require("Chromium", CHROMIUM.exists(), "apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require("playwright", False, "pip install -e '.[dev]'")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield b
        finally:
            b.close()


def failed_jobs(server: ServerProcess) -> list[dict[str, Any]]:
    r = httpx.get(f"{server.url}/api/admin/jobs?state=failed", headers=ADMIN, timeout=10)
    assert r.status_code == 200
    jobs: list[dict[str, Any]] = r.json()["jobs"]
    return jobs


def enqueue_failing(server: ServerProcess, count: int) -> list[int]:
    r = httpx.post(
        f"{server.url}/api/admin/jobs",
        json={"name": "test.flaky", "count": count},
        headers=ADMIN,
        timeout=10,
    )
    assert r.status_code == 201, r.text
    ids: list[int] = r.json()["ids"]
    deadline = time.monotonic() + 30
    while {j["id"] for j in failed_jobs(server)} < set(ids):
        assert time.monotonic() < deadline, "the flaky jobs did not fail for good"
        time.sleep(0.2)
    return ids


def test_an_operator_signs_in_sees_the_numbers_and_retries_a_failed_job(
    server: ServerProcess, browser: Any
) -> None:
    to_retry, to_discard = enqueue_failing(server, 2)
    for _ in range(20):  # some traffic for the numbers and the statements
        httpx.get(f"{server.url}/api/products?limit=5", timeout=5)

    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    response = page.goto(f"{server.url}/admin")
    assert response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    # A wrong token is refused with a message; the right one opens the page.
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    assert "not the admin token" in page.locator(".error").inner_text()
    assert problems == [
        "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    ]
    problems.clear()
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)

    # The numbers: every card has a value, and the request count is not zero.
    for label in ("Requests / s", "Error rate", "p95 latency", "Queue depth", "Failed jobs"):
        assert page.locator(f'[data-kpi="{label}"] .value').inner_text().strip()
    requests_note = page.locator('[data-kpi="Requests / s"] .note').inner_text()
    assert int(requests_note.split()[0].replace(",", "")) >= 20
    assert page.locator('[data-kpi="Failed jobs"] .value').inner_text() == "2"
    assert page.locator(".chart svg").count() == 4
    assert page.locator("#statements tbody tr").count() > 0
    assert "FROM products" in page.locator("#statements").inner_text()

    # Retry: fix the cause, press the button; the job runs again and succeeds.
    (server.data_dir / "fixed").touch()
    page.click(f'button[data-action="retry"][data-job="{to_retry}"]')
    page.wait_for_selector(f'[data-job-row="{to_retry}"]', state="detached", timeout=20_000)
    deadline = time.monotonic() + 30
    while True:
        job = httpx.get(f"{server.url}/api/admin/jobs", headers=ADMIN, timeout=5).json()["jobs"]
        if not any(j["id"] == to_retry for j in job):  # done and forgotten (no unique key)
            break
        assert time.monotonic() < deadline, f"job {to_retry} did not run after the retry"
        time.sleep(0.2)
    metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
    assert 'monolith_jobs_succeeded_total{job="test.flaky"} 1.0' in metrics

    # Discard takes two clicks (no dialog to dismiss by mistake).
    discard = page.locator(f'button[data-action="discard"][data-job="{to_discard}"]')
    discard.click()
    assert discard.inner_text() == "Confirm"
    discard.click()
    page.wait_for_selector(f'[data-job-row="{to_discard}"]', state="detached", timeout=20_000)
    assert failed_jobs(server) == []
    page.wait_for_selector("#failed-jobs .empty-state")

    # The plots come from the samples every worker shares (one per 15 s): a point appears.
    # (p95 has no point for an interval without requests.)
    page.wait_for_selector("#chart-rate .dot", timeout=60_000)
    for chart in ("#chart-errors", "#chart-queue"):
        assert page.locator(f"{chart} .dot").count() == 1
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "admin.png"), full_page=True)
    assert problems == []


def test_the_page_and_its_data_are_for_admins_only(server: ServerProcess) -> None:
    signin = httpx.get(f"{server.url}/admin", timeout=5)
    assert signin.status_code == 200
    assert 'name="token"' in signin.text and "admin.js" not in signin.text
    assert httpx.get(f"{server.url}/api/admin/overview", timeout=5).status_code == 401
    # The cookie alone does not let another site change anything: changes need the header.
    login = httpx.post(f"{server.url}/admin/login", data={"token": ADMIN_TOKEN}, timeout=5)
    assert login.status_code == 303
    cookies = login.cookies
    assert httpx.get(f"{server.url}/api/admin/overview", cookies=cookies, timeout=5).is_success
    no_header = httpx.delete(f"{server.url}/api/admin/jobs/999999", cookies=cookies, timeout=5)
    assert no_header.status_code == 403
    with_header = httpx.delete(
        f"{server.url}/api/admin/jobs/999999",
        cookies=cookies,
        headers={"X-Monolith-CSRF": "1"},
        timeout=5,
    )
    assert with_header.status_code == 404
    js = httpx.get(f"{server.url}/admin/static/admin.js", timeout=5)
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
