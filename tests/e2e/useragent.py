"""A user's browser, played over HTTP with requests: for the suites that drive the IdP with
a real OAuth client library rather than with Chromium."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from .stack import PASSWORD, SELLER

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
MAX_HOPS = 12


def query(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


class UserAgent:
    """Follows the IdP's redirects, fills the sign-in form and allows consent, and stops at
    the redirect back to the RP, returning its URL without following it (as the RP would
    receive it). ``pages`` lists the IdP pages shown, to tell a password prompt from SSO."""

    def __init__(self, email: str = SELLER, password: str = PASSWORD):
        self.http = requests.Session()
        self.email, self.password = email, password
        self.pages: list[str] = []

    def authorize(self, url: str, stop_at: str | None = None) -> str:
        stop_at = stop_at or query(url)["redirect_uri"]
        resp = self.http.get(url, allow_redirects=False, timeout=10)
        for _ in range(MAX_HOPS):
            if resp.is_redirect:
                target = urljoin(resp.url, resp.headers["Location"])
                if target.startswith(stop_at):
                    return target
                resp = self.http.get(target, allow_redirects=False, timeout=10)
            elif resp.status_code == 200 and "/signin/" in resp.url:
                resp = self._fill(resp)
            else:
                raise AssertionError(f"unexpected HTTP {resp.status_code} at {resp.url}:\n{resp.text[:800]}")
        raise AssertionError(f"more than {MAX_HOPS} hops from {url}")

    def _fill(self, page: requests.Response) -> requests.Response:
        step = urlsplit(page.url).path.rsplit("/", 1)[-1]
        self.pages.append(step)
        match = CSRF.search(page.text)
        assert match, f"no csrf_token in the {step} page"
        data = {"csrf_token": match.group(1)}
        if step == "password":
            data.update(email=self.email, password=self.password)
        elif step == "consent":
            data["allow"] = "Allow"
        else:
            raise AssertionError(f"sign-in step {step!r} is not played by this user agent")
        return self.http.post(page.url, data=data, allow_redirects=False, timeout=30)
