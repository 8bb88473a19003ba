"""Drive the whole OIDC authorization code flow (PKCE S256 + sign-in) against an issuer.

authorize -> login form -> (consent, if the IdP shows one) -> code at redirect_uri -> token.
Generic over two "adapters" that know how to fill in each IdP's HTML pages:

  reference  the interaction pages of bench/reference/server.mjs
  ours       our IdP: see ours_login / ours_consent below

Usable as a library (run_flow, mint_tokens, run_load) or from the command line:

  python bench/flow_driver.py --issuer http://127.0.0.1:PORT --adapter reference \
      --clients bench/reference/clients.example.json --password PW --duration 10 --workers 8
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import statistics
import threading
import time
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests

EMAIL = "seller@example.com"
SCOPE = "openid email offline_access"
MAX_HOPS = 12


# --- HTML form helper -------------------------------------------------------

class _Forms(HTMLParser):
    """Collects <form>s: action, method, and <input>/<button> name/value/type."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action") or "", "method": (a.get("method") or "get").lower(),
                               "fields": []})
        elif tag in ("input", "button") and self.forms and a.get("name"):
            typ = (a.get("type") or ("submit" if tag == "button" else "text")).lower()
            self.forms[-1]["fields"].append((a["name"], a.get("value") or "", typ))


def parse_forms(html: str) -> list[dict]:
    p = _Forms()
    p.feed(html)
    return p.forms


def submit_form(session: requests.Session, page: requests.Response, values: dict, pick=None) -> requests.Response:
    """POST the first form on `page` (or the first one for which pick(form) is true).

    Hidden inputs (csrf_token, ...) are sent as found; `values` overrides/adds fields.
    Submit buttons are not sent unless given in `values` (e.g. {"decision": "approve"}).
    """
    forms = [f for f in parse_forms(page.text) if pick is None or pick(f)]
    if not forms:
        raise RuntimeError(f"no matching form on {page.url} (HTTP {page.status_code})")
    form = forms[0]
    data = {name: value for name, value, typ in form["fields"] if typ not in ("submit", "button")}
    data.update(values)
    return session.post(urljoin(page.url, form["action"]), data=data, allow_redirects=False)


def _has_password(form: dict) -> bool:
    return any(typ == "password" for _, _, typ in form["fields"])


# --- adapters ---------------------------------------------------------------

def reference_login(session: requests.Session, login_page: requests.Response, password: str) -> requests.Response:
    """bench/reference/server.mjs: form with email + password, posted to /interaction/<uid>/login."""
    return submit_form(session, login_page, {"email": EMAIL, "password": password}, pick=_has_password)


def reference_consent(session, page, password):
    raise RuntimeError("reference IdP auto-grants consent; got an unexpected page at " + page.url)


def ours_login(session: requests.Session, login_page_response: requests.Response, password: str) -> requests.Response:
    """Our password page (idp/templates/signin/password.html): email, password and the hidden
    csrf_token, posted to the form's action. Returns the (redirect) response, not followed."""
    return submit_form(session, login_page_response, {"email": EMAIL, "password": password}, pick=_has_password)


def ours_consent(session: requests.Session, consent_page_response: requests.Response, password: str) -> requests.Response:
    """Our consent page (idp/templates/signin/consent.html), which a first-party client never
    sees (the bench clients are first-party): Allow, as its submit button sends it."""
    return submit_form(session, consent_page_response, {"allow": "Allow"})


ADAPTERS = {
    "reference": (reference_login, reference_consent),
    "ours": (ours_login, ours_consent),
}


# --- the flow ---------------------------------------------------------------

def discover(issuer: str) -> dict:
    r = requests.get(issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=10)
    r.raise_for_status()
    return r.json()


def load_client(clients_file: str, client_id: str = "bench-web") -> dict:
    with open(clients_file) as f:
        return next(c for c in json.load(f) if c["client_id"] == client_id)


def run_flow(session: requests.Session, meta: dict, client: dict, adapter: str, password: str,
             scope: str = SCOPE) -> dict:
    """One full authorization code flow; returns the token endpoint's JSON response."""
    login, consent = ADAPTERS[adapter]
    redirect_uri = client["redirect_uris"][0]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    query = urlencode({
        "response_type": "code", "client_id": client["client_id"], "redirect_uri": redirect_uri,
        "scope": scope, "state": state, "nonce": nonce,
        "code_challenge": challenge, "code_challenge_method": "S256",
    })
    resp = session.get(meta["authorization_endpoint"] + "?" + query, allow_redirects=False)
    pages = 0
    for _ in range(MAX_HOPS):
        if resp.is_redirect:
            location = urljoin(resp.url, resp.headers["Location"])
            if location.startswith(redirect_uri):  # never follow: nothing listens there
                params = parse_qs(urlsplit(location).query)
                if "code" not in params:
                    raise RuntimeError(f"authorization error: {params}")
                if params.get("state") != [state]:
                    raise RuntimeError("state mismatch")
                code = params["code"][0]
                break
            resp = session.get(location, allow_redirects=False)
        elif resp.status_code == 200 and "html" in resp.headers.get("Content-Type", ""):
            resp = (login if pages == 0 else consent)(session, resp, password)
            pages += 1
        else:
            raise RuntimeError(f"unexpected HTTP {resp.status_code} at {resp.url}: {resp.text[:300]}")
    else:
        raise RuntimeError("too many redirects/pages")

    tok = session.post(meta["token_endpoint"], auth=(client["client_id"], client["client_secret"]), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    })
    if tok.status_code != 200:
        raise RuntimeError(f"token endpoint HTTP {tok.status_code}: {tok.text[:300]}")
    return tok.json()


def _fan_out(workers: int, body) -> None:
    threads = [threading.Thread(target=body, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def mint_tokens(issuer: str, client: dict, adapter: str, password: str, n: int, workers: int = 4) -> list[dict]:
    """Run n flows (a few at a time) and return their token responses."""
    meta = discover(issuer)
    out: list[dict] = []
    lock = threading.Lock()

    def body(i):
        with requests.Session() as s:
            for _ in range(i, n, workers):
                s.cookies.clear()
                t = run_flow(s, meta, client, adapter, password)
                with lock:
                    out.append(t)

    _fan_out(workers, body)
    if len(out) != n:
        raise RuntimeError(f"minted {len(out)}/{n} token sets")
    return out


def run_load(issuer: str, client: dict, adapter: str, password: str, duration: float = 10.0,
             workers: int = 8) -> dict:
    """N worker threads run flows back to back for `duration` seconds (each flow a fresh sign-in:
    cookies cleared, connection kept). Returns flows/s, p50/p99 (ms) and the error count."""
    meta = discover(issuer)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def body(_):
        with requests.Session() as s:
            while time.monotonic() < deadline:
                s.cookies.clear()
                t0 = time.perf_counter()
                try:
                    run_flow(s, meta, client, adapter, password)
                    ok = True
                except Exception as e:  # noqa: BLE001 - counted and reported
                    ok = False
                    err = f"{type(e).__name__}: {e}"
                dt = time.perf_counter() - t0
                with lock:
                    if ok:
                        latencies.append(dt)
                    else:
                        errors.append(err)

    start = time.monotonic()
    _fan_out(workers, body)
    elapsed = time.monotonic() - start
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [0.0] * 99
    return {
        "flows": len(latencies), "errors": len(errors), "first_error": errors[0] if errors else None,
        "rps": len(latencies) / elapsed, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--issuer", required=True)
    ap.add_argument("--adapter", choices=sorted(ADAPTERS), default="reference")
    ap.add_argument("--clients", required=True, help="clients JSON file (same one the IdP loaded)")
    ap.add_argument("--password", required=True)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    res = run_load(args.issuer, load_client(args.clients), args.adapter, args.password, args.duration, args.workers)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
