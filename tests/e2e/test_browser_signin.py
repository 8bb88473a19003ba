"""A seller in a real browser (Debian's Chromium, driven by Playwright) against the real IdP
and the relying parties of clients/: sign in to the dashboard, single sign-on into a
portal, RP-initiated logout (OIDC RP-Initiated Logout 1.0) and back-channel logout
(OIDC Back-Channel Logout 1.0) ending the dashboard's session.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest
from playwright.sync_api import expect, sync_playwright

from .stack import PASSWORD, SELLER

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 15_000
PASSWORD_PAGE = re.compile(r".*/signin/[^/]+/password$")


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (never `playwright install`)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True, timeout=30_000)
        try:
            yield chromium
        finally:
            chromium.close()


class Seller:
    """One browser profile (a fresh context: no cookies) and what it has seen."""

    def __init__(self, browser, stack):
        self.stack = stack
        self.context = browser.new_context()
        self.context.set_default_timeout(TIMEOUT_MS)
        self.context.set_default_navigation_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.csp_violations: list[str] = []
        self.password_prompts = 0
        self.page.on("console", self._console)
        self.page.on("framenavigated", self._navigated)

    def _console(self, message):
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.csp_violations.append(f"{message.location.get('url')}: {message.text}")

    def _navigated(self, frame):
        if frame == self.page.main_frame and PASSWORD_PAGE.match(frame.url.split("?")[0]):
            self.password_prompts += 1

    def url(self, rp: str) -> str:
        return self.stack.rp_url(rp) + "/"

    def enter_password(self) -> None:
        self.page.wait_for_url(PASSWORD_PAGE)
        self.page.fill("#email", SELLER)
        self.page.fill("#password", PASSWORD)
        self.page.click("button[type=submit]")

    def sign_in(self, rp: str) -> None:
        self.page.goto(self.url(rp))
        self.page.click("#signin")

    def wait_signed_in(self, rp: str) -> None:
        self.page.wait_for_url(self.url(rp))
        expect(self.page.locator("#who")).to_contain_text(SELLER)

    def sign_out(self, rp: str) -> None:
        self.page.goto(self.url(rp))
        self.page.click("#signout")
        self.page.wait_for_url(re.compile(re.escape(self.url(rp)) + r"\?.*state="))
        expect(self.page.locator("body")).to_contain_text("You are signed out.")
        expect(self.page.locator("#signin")).to_be_visible()


@pytest.fixture(params=["embedded", "production"])
def seller(request, browser):
    """A seller's browser against the stack of `make run` (flask run, SQLite, the in-process
    store) and against production's (`idp serve`: two granian workers, PostgreSQL, Redis)."""
    stack = request.getfixturevalue("relying_parties" if request.param == "embedded"
                                    else "production_relying_parties")
    s = Seller(browser, stack)
    yield s
    s.context.close()


def test_sign_in_single_sign_on_and_sign_out(seller):
    seller.sign_in("dashboard")
    seller.page.wait_for_url(PASSWORD_PAGE)
    # The stylesheet loaded under the page's CSP (a blocked one leaves the card unstyled)
    assert seller.page.eval_on_selector("main.card", "e => getComputedStyle(e).maxWidth") == "380px"
    assert seller.csp_violations == []
    seller.enter_password()
    seller.wait_signed_in("dashboard")
    claims = json.loads(seller.page.locator("#claims").inner_text())
    assert claims["email"] == SELLER and claims["aud"] == "seller-dashboard"

    seller.page.click("#call-api")
    expect(seller.page.locator("body")).to_contain_text("HTTP 200")
    seller.page.click("#refresh")
    expect(seller.page.locator("body")).to_contain_text("rotated: the old one is now spent")

    seller.sign_in("portal_na")  # single sign-on: straight back, no password
    seller.wait_signed_in("portal_na")
    assert seller.password_prompts == 1

    seller.sign_out("dashboard")
    wait_signed_out(seller, "portal_na")  # the IdP told the portal too, server to server
    seller.sign_in("portal_eu")  # the IdP session is over: the password is asked again
    seller.enter_password()
    seller.wait_signed_in("portal_eu")
    assert seller.password_prompts == 2
    assert seller.csp_violations == []


def test_back_channel_logout_ends_the_dashboard_session(seller):
    seller.sign_in("dashboard")
    seller.enter_password()
    seller.wait_signed_in("dashboard")
    seller.sign_in("portal_na")
    seller.wait_signed_in("portal_na")

    seller.sign_out("portal_na")  # the IdP ends its session and tells the dashboard, server to server
    wait_signed_out(seller, "dashboard")


def wait_signed_out(seller, rp):
    deadline = time.monotonic() + 30  # a bound for a loaded machine, not a measurement
    while True:  # delivery may finish just after the redirect: poll, bounded
        seller.page.goto(seller.url(rp))
        if seller.page.locator("#signin").count():
            break
        assert time.monotonic() < deadline, f"the {rp} session outlived the IdP session"
        time.sleep(0.2)


def test_our_form_posts_carry_referer_and_origin_and_relying_parties_get_neither(seller):
    """Referrer-Policy: same-origin. Flask-WTF's CSRF check requires a same-origin Referer on
    every HTTPS post (behind a TLS balancer too), so the sign-in form must send one; a
    relying party, another origin, must not learn which IdP page the seller came from."""
    issuer = seller.stack.issuer
    seller.sign_in("dashboard")
    seller.page.wait_for_url(PASSWORD_PAGE)
    with seller.page.expect_request(lambda r: r.method == "POST" and PASSWORD_PAGE.match(r.url)) as posted:
        with seller.page.expect_request(lambda r: r.url.startswith(seller.url("dashboard") + "callback")) as back:
            seller.enter_password()
    sent = posted.value.all_headers()
    assert sent.get("referer", "").startswith(issuer + "/signin/"), sent
    assert sent.get("origin") == issuer, sent  # "null" under no-referrer
    assert not back.value.all_headers().get("referer", "").startswith(issuer), back.value.all_headers()
    seller.wait_signed_in("dashboard")


def test_a_native_apps_private_use_scheme_receives_its_code(seller):
    """RFC 8252 §7.1: the mobile app's redirect URI is com.example.seller:/oauth2redirect.
    Chromium holds a form's redirects to the page's CSP form-action: the sign-in page names
    that scheme, so the answer to the password form goes to the app (headless Chromium has
    no app for it and aborts the navigation; what counts is that it was made)."""
    from urllib.parse import parse_qs, urlencode, urlsplit

    from tests.conftest import pkce_pair

    redirect_uri = "com.example.seller:/oauth2redirect"
    _, challenge = pkce_pair()
    handed_to_the_app = []
    seller.page.on("request", lambda r: handed_to_the_app.append(r.url) if r.url.startswith(redirect_uri) else None)
    seller.page.goto(seller.stack.issuer + "/authorize?" + urlencode({
        "response_type": "code", "client_id": "seller-mobile", "redirect_uri": redirect_uri, "scope": "openid",
        "state": "st-native", "code_challenge": challenge, "code_challenge_method": "S256"}))
    seller.enter_password()
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not handed_to_the_app and time.monotonic() < deadline:
        seller.page.wait_for_timeout(100)
    assert seller.csp_violations == []
    assert handed_to_the_app, "the browser never followed the redirect to the app's scheme"
    answer = parse_qs(urlsplit(handed_to_the_app[0]).query)
    assert answer["state"] == ["st-native"] and answer["code"][0]
