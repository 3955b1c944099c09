"""``/admin`` in headless Chromium against a real ``monolith serve --workers 2``.

An operator whose account ``monolith create-admin`` made signs in with email and password,
sees the numbers, the plots, the top statements and a failed job; fixes the cause and
retries the job with its button (it runs and succeeds); discards another one. The page runs
under a CSP that forbids inline script, so a console without errors also says the page needs
nothing but its own assets. A full-page screenshot is left in ``test-output/admin.png`` for a
person to look at. Without a browser: the admin token is the other way in, a signed-in user
who is not an admin is refused, and changes made with a cookie need the CSRF header.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import ADMIN_TOKEN, ServerProcess, base_env, run_cli
from tests.services import require

pytestmark = [pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CSRF = {"X-Monolith-CSRF": "1"}
EMAIL, PASSWORD = "ops@example.com", "a long admin password"
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
        made = run_cli("create-admin", EMAIL, "--password-stdin", env=env, input=PASSWORD + "\n")
        assert made.returncode == 0, made.stderr
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


@pytest.mark.chromium
def test_an_operator_signs_in_sees_the_numbers_and_retries_a_failed_job(
    server: ServerProcess, browser: Any
) -> None:
    to_retry, to_discard = enqueue_failing(server, 2)
    for n in range(1, 21):  # some traffic for the numbers (each page size its own cache entry)
        httpx.get(f"{server.url}/api/products?limit={n}", timeout=5)

    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    response = page.goto(f"{server.url}/admin")
    assert response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    # A wrong password is refused with a message; the admin account's opens the page.
    page.fill("#email", EMAIL)
    page.fill("#password", "not the password")
    page.click("#account-form button[type=submit]")
    assert "Wrong email or password" in page.locator(".error").inner_text()
    assert problems == [
        "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    ]
    problems.clear()
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("#account-form button[type=submit]")
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    assert page.locator("#who").inner_text() == EMAIL
    # The same session the API's login gives: the page's browser is signed in to the API too.
    me = page.request.get(f"{server.url}/api/me")
    assert me.ok and me.json()["role"] == "admin"

    # The numbers: every card has a value, and the request count is not zero.
    for label in ("Requests / s", "Error rate", "p95 latency", "Queue depth", "Failed jobs"):
        assert page.locator(f'[data-kpi="{label}"] .value').inner_text().strip()
    requests_note = page.locator('[data-kpi="Requests / s"] .note').inner_text()
    assert int(requests_note.split()[0].replace(",", "")) >= 20
    assert page.locator('[data-kpi="Failed jobs"] .value').inner_text() == "2"
    assert page.locator(".chart svg").count() == 4
    assert page.locator("#statements tbody tr").count() > 0
    # Which statements lead depends on their timings; that there are some, and that they are
    # normalized (values out), does not.
    statements = page.locator("#statements tbody").inner_text()
    assert "SELECT" in statements and "?" in statements

    # Retry: fix the cause, press the button; the job runs again and succeeds.
    (server.data_dir / "fixed").touch()
    page.click(f'button[data-action="retry"][data-job="{to_retry}"]')
    page.wait_for_selector(f'[data-job-row="{to_retry}"]', state="detached", timeout=20_000)
    deadline = time.monotonic() + 30
    while True:
        job = httpx.get(f"{server.url}/api/admin/jobs", headers=ADMIN, timeout=5).json()["jobs"]
        if any(j["id"] == to_retry and j["state"] == "done" for j in job):  # kept, done
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

    # Queues: each with its state and limit; pausing one holds its jobs on every runner.
    row = page.locator('[data-queue-row="default"]')
    assert "active" in row.inner_text()
    page.click('button[data-action="pause"][data-queue="default"]')
    page.wait_for_selector('button[data-action="resume"][data-queue="default"]', timeout=20_000)
    queues = httpx.get(f"{server.url}/api/admin/jobs/queues", headers=ADMIN, timeout=5).json()
    assert [q["paused"] for q in queues["queues"] if q["name"] == "default"] == [True]
    assert "paused" in row.inner_text()
    page.click('button[data-action="resume"][data-queue="default"]')
    page.wait_for_selector('button[data-action="pause"][data-queue="default"]', timeout=20_000)

    # The plots come from the samples every worker shares (one per 15 s): a point appears.
    # (p95 has no point for an interval without requests.)
    page.wait_for_selector("#chart-rate .dot", timeout=60_000)
    for chart in ("#chart-errors", "#chart-queue"):
        assert page.locator(f"{chart} .dot").count() == 1
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / "admin.png"), full_page=True)
    assert problems == []


def test_the_admin_token_is_the_other_way_in(server: ServerProcess) -> None:
    signin = httpx.get(f"{server.url}/admin", timeout=5)
    assert signin.status_code == 200
    assert 'name="email"' in signin.text and 'name="token"' in signin.text
    assert "admin.js" not in signin.text
    assert httpx.get(f"{server.url}/api/admin/overview", timeout=5).status_code == 401
    wrong = httpx.post(f"{server.url}/admin/login", data={"token": "nope"}, timeout=5)
    assert wrong.status_code == 401 and "not the admin token" in wrong.text
    login = httpx.post(f"{server.url}/admin/login", data={"token": ADMIN_TOKEN}, timeout=5)
    assert login.status_code == 303
    cookies = login.cookies
    page = httpx.get(f"{server.url}/admin", cookies=cookies, timeout=5)
    assert "admin.js" in page.text and ">admin token<" in page.text
    assert httpx.get(f"{server.url}/api/admin/overview", cookies=cookies, timeout=5).is_success
    assert_changes_need_the_csrf_header(server, cookies)
    # Signing out clears both kinds of cookie.
    out = httpx.post(f"{server.url}/admin/logout", cookies=cookies, timeout=5)
    assert out.status_code == 303
    cleared = {c.split("=")[0]: c for c in out.headers.get_list("set-cookie")}
    assert set(cleared) == {"monolith_admin", "monolith_session"}
    assert all("Max-Age=0" in c for c in cleared.values())


def test_an_admin_session_from_the_api_opens_the_page(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        r = client.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
        assert r.status_code == 200
        page = client.get("/admin")
        assert "admin.js" in page.text and f">{EMAIL}<" in page.text
        assert client.get("/api/admin/overview").is_success
        assert_changes_need_the_csrf_header(server, client.cookies)
        # Signing out of the page ends the session for the API too.
        assert client.post("/admin/logout").status_code == 303
        assert client.get("/api/me").status_code == 401
        assert client.get("/api/admin/overview").status_code == 401


def test_a_user_who_is_not_an_admin_is_refused(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        user = {"email": "user@example.com", "password": PASSWORD}
        r = client.post("/api/auth/signup", json={**user, "name": "User"})
        assert r.status_code in (201, 409)
        refused = client.post("/admin/login", data=user)
        assert refused.status_code == 403 and "is not an admin" in refused.text
        assert "monolith_session" not in refused.headers.get("set-cookie", "")
        assert client.post("/api/auth/login", json=user).status_code == 200
        page = client.get("/admin")
        assert page.status_code == 403 and "user@example.com is not an admin" in page.text
        assert client.get("/api/admin/overview").status_code == 403
        empty = client.post("/admin/login", data={"email": EMAIL})
        assert empty.status_code == 400


def assert_changes_need_the_csrf_header(server: ServerProcess, cookies: Any) -> None:
    """The cookie alone does not let another site change anything: changes need the header."""
    url = f"{server.url}/api/admin/jobs/999999"
    no_header = httpx.delete(url, cookies=cookies, timeout=5)
    assert no_header.status_code == 403
    assert httpx.delete(url, cookies=cookies, headers=CSRF, timeout=5).status_code == 404


def test_the_pages_assets_are_served(server: ServerProcess) -> None:
    js = httpx.get(f"{server.url}/admin/static/admin.js", timeout=5)
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
