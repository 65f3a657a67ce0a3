"""The account page in a real browser: headless Chromium, driven by Playwright, with Chromium's
own virtual authenticator (DevTools' WebAuthn domain) making the passkey. This is the proof that
counts: the browser computes the origin, the RP ID check, the Sec-Fetch-Site header and the
cookie rules itself.

The page is served at http://localhost:PORT: WebAuthn needs a secure context, which http
counts as on localhost only, and the RP ID must be the page's host. The hostile page is at
http://127.0.0.1:OTHER: another host, so another site to the browser.

Chromium is the system's (PLAYWRIGHT_CHROMIUM, or `chromium` on PATH; `apt-get install
chromium`); Playwright's own browser download is never used. Without one, this module is
skipped with a single line saying so; with REQUIRE_BROWSER set (CI), it fails instead.
"""

import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from .conftest import PASSWORD, Web, free_port, launch, new_email

CHROMIUM = (
    os.environ.get("PLAYWRIGHT_CHROMIUM")
    or shutil.which("chromium")
    or shutil.which("google-chrome")  # what a CI runner may ship instead
)
if not CHROMIUM:
    message = (
        "no Chromium for the browser tests: apt-get install chromium, or set PLAYWRIGHT_CHROMIUM"
    )
    if os.environ.get("REQUIRE_BROWSER"):  # CI: a missing browser is a failure, not a skip
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def site(migrated: dict[str, str]) -> Iterator[Web]:
    """A web process whose PUBLIC_URL is the origin the browser will use."""
    port = free_port()
    process = launch(
        "web", {**migrated, "PORT": str(port), "PUBLIC_URL": f"http://localhost:{port}"}
    )
    assert isinstance(process, Web)
    process.wait_ready()
    process.page_url = f"http://localhost:{port}/"  # type: ignore[attr-defined]
    yield process
    process.kill_group()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []
    # Script errors, and what the policy blocked (an expected 401 is logged too: not counted).
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and "Failed to load resource" not in m.text
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.problems = problems  # type: ignore[attr-defined]
    yield page
    context.close()


def virtual_authenticator(page: Page) -> Any:
    """A platform passkey provider that verifies the user at once, as a fingerprint would."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def test_sign_up_add_a_passkey_log_out_and_log_in_with_it(site: Web, page: Page) -> None:
    cdp, authenticator = virtual_authenticator(page)
    email = new_email("browser")
    page.goto(site.page_url)  # type: ignore[attr-defined]
    expect(page.locator("#signed-out")).to_be_visible()

    signup = page.locator("#signup")
    signup.locator("input[name=email]").fill(email)
    signup.locator("input[name=password]").fill(PASSWORD)
    signup.locator("button[type=submit]").click()
    expect(page.locator("#me")).to_have_text(email)

    page.locator("#add-passkey input[name=name]").fill("Virtual")
    page.locator("#add-passkey button[type=submit]").click()
    expect(page.locator("#passkeys li")).to_have_count(1)
    expect(page.locator("#passkeys li")).to_contain_text("Virtual")
    credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert len(credentials["credentials"]) == 1
    assert credentials["credentials"][0]["isResidentCredential"] is True  # discoverable
    assert credentials["credentials"][0]["rpId"] == "localhost"

    page.locator("#logout").click()
    expect(page.locator("#signed-out")).to_be_visible()

    page.locator("#passkey-login").click()  # no email typed: the passkey names the account
    expect(page.locator("#me")).to_have_text(email)
    current = page.locator("#sessions li.current")
    expect(current).to_have_count(1)
    expect(current).to_contain_text("This session")
    counted = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert counted["credentials"][0]["signCount"] >= 1
    assert page.problems == []  # type: ignore[attr-defined]  # nothing the policy blocked


def test_a_password_login_then_the_passkey_as_second_factor(site: Web, page: Page) -> None:
    virtual_authenticator(page)
    email = new_email("browser")
    page.goto(site.page_url)  # type: ignore[attr-defined]
    signup = page.locator("#signup")
    signup.locator("input[name=email]").fill(email)
    signup.locator("input[name=password]").fill(PASSWORD)
    signup.locator("button[type=submit]").click()
    page.locator("#add-passkey button[type=submit]").click()
    expect(page.locator("#passkeys li")).to_have_count(1)
    page.locator("#logout").click()

    login = page.locator("#login")
    login.locator("input[name=email]").fill(email)
    login.locator("input[name=password]").fill(PASSWORD)
    login.locator("button[type=submit]").click()
    expect(page.locator("#second-factor")).to_be_visible()
    page.locator("#second-factor-passkey").click()
    expect(page.locator("#me")).to_have_text(email)


class HostilePage(BaseHTTPRequestHandler):
    """Another site's page whose form posts to the service: a cross-site request forgery."""

    target = ""

    def do_GET(self) -> None:
        body = (
            "<!doctype html><title>win a prize</title>"
            f'<form id="forge" method="post" action="{self.target}">'
            '<input name="title" value="forged"><button>go</button></form>'
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_form_on_another_site_is_refused_by_the_cross_site_check(site: Web, page: Page) -> None:
    origin = site.page_url.rstrip("/")  # type: ignore[attr-defined]
    # Logged in first, so the refusal is the cross-site check's and not a missing session's.
    page.goto(origin + "/")
    signup = page.locator("#signup")
    signup.locator("input[name=email]").fill(new_email("browser"))
    signup.locator("input[name=password]").fill(PASSWORD)
    signup.locator("button[type=submit]").click()
    expect(page.locator("#signed-in")).to_be_visible()

    handler = type(
        "Handler", (HostilePage,), {"target": f"{origin}/api/v1/passkeys/registration/options"}
    )
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        with page.expect_response(lambda r: "/api/v1/" in r.url) as answer:
            page.locator("#forge button").click()
        response = answer.value
        sent = response.request.all_headers()
        assert sent.get("sec-fetch-site") == "cross-site"  # the browser's own word
        assert response.status == 403
        assert response.json()["detail"] == "cross-origin request refused"
    finally:
        server.shutdown()
        server.server_close()
    # The same request from the page itself, same origin, is let through.
    page.goto(origin + "/")
    expect(page.locator("#signed-in")).to_be_visible()
    status = page.evaluate(
        "fetch('api/v1/passkeys/registration/options', {method: 'POST'}).then(r => r.status)"
    )
    assert status == 200
    # Trusted Types are enforced: a string handed to an HTML sink throws instead of parsing.
    refused = page.evaluate(
        "() => { try { document.body.insertAdjacentHTML('beforeend', '<b>x</b>');"
        " return false } catch (e) { return e instanceof TypeError } }"
    )
    assert refused is True
