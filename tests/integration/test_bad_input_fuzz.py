"""No 500 for anything a client can send: random requests at every route, on both stacks.

A seeded random walk (so a failure reproduces) over every URL rule and method, with
parameters drawn from the names the endpoints read and values chosen to break parsers and
databases: NUL bytes, lone surrogates, invalid percent-encoding, oversized strings, other
tokens, JSON and multipart bodies, broken HTTP Basic. Each answer must be below 500; the
tables in test_token_bad_input.py and the endpoint suites check the exact errors.
"""

import base64
import io
import random
from urllib.parse import quote_from_bytes

import pytest

from idp.extensions import db
from tests.integration.token_helpers import login

REQUESTS = 1500
PARAMS = ["grant_type", "code", "redirect_uri", "client_id", "client_secret", "refresh_token", "scope", "resource",
          "code_verifier", "token", "token_type_hint", "response_type", "state", "nonce", "code_challenge",
          "code_challenge_method", "prompt", "max_age", "login_hint", "id_token_hint", "post_logout_redirect_uri",
          "ui_locales", "acr_values", "request", "request_uri", "response_mode", "claims", "client_assertion",
          "client_assertion_type", "logout_token", "email", "password", "csrf_token"]
GRANTS = ["authorization_code", "refresh_token", "client_credentials", "password", "urn:x"]
RAW_QUERIES = ["%", "a=%", "&&&", "=%ff%fe", "a=%zz", "scope=%00"]
BODIES = [b"\xff\xfe\x00", b'{"grant_type": "refresh_token"}', b"--x\r\nContent-Disposition: form-data; "
          b"name=\"a\"\r\n\r\nb\r\n--x--\r\n", b"a=" + b"b" * 70000]
CONTENT_TYPES = ["application/x-www-form-urlencoded", "application/json", "multipart/form-data; boundary=x",
                 "text/plain", None]
COOKIES = ["session=garbage", "idp_session=%00", "idp_browser=" + "a" * 4000, "__Host-idp_session=x"]


def _values(tokens, rp):
    return ["", "\x00", "a" * 5000, "é", "\ud800", "\u202e", "%00", "' OR 1=1--", "null", "-1", "1e309", "[]",
            "http://evil.example/", "javascript:alert(1)", "openid", "S256", "plain", "\r\nX-Injected: 1",
            rp.client_id, "rp-web\x00", *(v for v in tokens.values() if isinstance(v, str)), *GRANTS]


def _auths(tokens, rp):
    def basic(raw: bytes):
        return "Basic " + base64.b64encode(raw).decode()

    return [None, basic(f"{rp.client_id}:{rp.secret}".encode()), basic(b"\xff:\xfe"), basic(b"rp-web\x00:x"),
            basic(b"rp-web"), "Basic !!!", "Bearer " + tokens["access_token"], "Bearer " + tokens["id_token"],
            "Bearer \x00", "Bearer " + "a" * 5000, "Digest x"]


def _encode(value: str) -> str:
    return quote_from_bytes(value.encode("utf-8", "surrogatepass"), safe="")


def _environ(rnd, rule, method, values, auths):
    path = "/".join("x" if "<" in part else part for part in rule.split("/"))
    pairs = [(rnd.choice(PARAMS), rnd.choice(values)) for _ in range(rnd.randint(0, 6))]
    if rnd.random() < 0.4:
        pairs.insert(0, ("grant_type", rnd.choice(GRANTS)))
    query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in pairs)
    if rnd.random() < 0.05:
        query = rnd.choice(RAW_QUERIES)
    body = b""
    env = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
           "SERVER_PORT": "5000", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1:5000",
           "wsgi.url_scheme": "http", "wsgi.errors": io.StringIO(), "wsgi.multithread": False,
           "wsgi.multiprocess": False, "wsgi.run_once": False, "REMOTE_ADDR": "127.0.0.1"}
    if method == "GET" or rnd.random() < 0.2:
        env["QUERY_STRING"] = query
    if method == "POST":
        body = rnd.choice(BODIES) if rnd.random() < 0.1 else query.encode("ascii")
        content_type = rnd.choice(CONTENT_TYPES)
        if content_type:
            env["CONTENT_TYPE"] = content_type
    env["wsgi.input"], env["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
    auth = rnd.choice(auths)
    if auth:
        env["HTTP_AUTHORIZATION"] = auth
    if rnd.random() < 0.2:
        env["HTTP_COOKIE"] = rnd.choice(COOKIES)
    return env, pairs


def test_no_request_gets_a_server_error(app, flow, rp):
    tokens = login(flow, scope="openid email offline_access")
    rp.token_endpoint_auth_method = "client_secret_basic"
    db.session.commit()
    values, auths = _values(tokens, rp), _auths(tokens, rp)
    routes = sorted((rule.rule, method) for rule in app.url_map.iter_rules() if rule.endpoint != "static"
                    for method in sorted(rule.methods - {"HEAD", "OPTIONS"}))
    # And the paths answered before Flask (idp.web.routes.PathRoutes: the API endpoints, the
    # discovery documents), which are in no url_map, with each method they take and one they do not.
    layer = app.wsgi_app
    while hasattr(layer, "routes"):
        for path, (_, data) in layer.routes.items():
            taken = data[0] if isinstance(data, tuple) and data and isinstance(data[0], tuple) else ("GET",)
            routes += [(path, method) for method in sorted({*taken, "GET", "POST", "OPTIONS"})]
        layer = layer.next
    assert {("/token", "POST"), ("/introspect", "POST"), ("/userinfo", "GET"), ("/jwks", "GET")} <= set(routes)
    rnd = random.Random(20261127)
    failures = []
    for _ in range(REQUESTS):
        rule, method = rnd.choice(routes)
        env, pairs = _environ(rnd, rule, method, values, auths)
        status = []
        with app.app_context():
            body = b"".join(app(env, lambda s, h, exc=None: status.append(s)))
        if int(status[0][:3]) >= 500:
            failures.append((method, rule, pairs, env.get("HTTP_AUTHORIZATION", "")[:40], status[0], body[:200]))
    assert not failures, failures[:5]


JSON_BODIES = [b"[1]", b"1", b'"x"', b"[[1, 2, 3]]", b'{"email": "a@b", "password": {"x": 1}}',
               b'{"email": ["a", "b"], "password": 5}', b'{"logout_id": 5}', b'{"allow": true}']


def test_a_json_body_is_never_taken_for_a_form(app, client, flow, seller, third_party_rp):
    """Flask-WTF would read a JSON body as the form (the CSRF token from a header): such
    bodies were 500s, and a JSON object with the right email and password signed in."""
    from tests.conftest import PASSWORD, Flow, csrf_token

    third = Flow(client, third_party_rp)
    start = third.authorize()
    password_url = start.headers["Location"]
    token = csrf_token(client.get(password_url).get_data(as_text=True))
    posts = [password_url]
    consent = third.sign_in(third.authorize())  # signed in now: the consent page of the third party
    consent_url = consent.headers["Location"]
    posts += [consent_url, "/logout/confirm", "/account/sign-out-everywhere"]
    for url in posts:
        for body in JSON_BODIES:
            resp = client.post(url, data=body, content_type="application/json", headers={"X-CSRFToken": token})
            assert 400 <= resp.status_code < 500, (url, body, resp.status_code)
    fresh = flow.authorize(prompt="login")  # signed in already: ask for the password again
    url = fresh.headers["Location"]
    token = csrf_token(client.get(url).get_data(as_text=True))
    as_json = client.post(url, json={"email": seller.email, "password": PASSWORD}, headers={"X-CSRFToken": token})
    assert as_json.status_code == 200 and "Incorrect email or password." in as_json.get_data(as_text=True)


@pytest.mark.parametrize("field", ["email", "password", "csrf_token"])
def test_a_file_part_is_never_taken_for_a_form_field(flow, seller, field):
    """Flask-WTF gave a multipart body's files to the form: a file part named email reached
    the Length validator as a FileStorage, a 500, through a live sign-in with a valid token."""
    from tests.conftest import PASSWORD, csrf_token

    url = flow.authorize().headers["Location"]
    fields = {"csrf_token": csrf_token(flow.client.get(url).get_data(as_text=True)), "email": seller.email,
              "password": PASSWORD}
    fields[field] = (io.BytesIO(b"x" * 10), "f.txt")
    resp = flow.client.post(url, data=fields, content_type="multipart/form-data")
    # The field is empty: no CSRF token (400), or the form again with the neutral message
    body = resp.get_data(as_text=True)
    assert (resp.status_code, "CSRF" in body if field == "csrf_token" else "Incorrect email or password." in body) \
        == (400 if field == "csrf_token" else 200, True), resp.status_code
    # The same form as text fields still signs in: multipart itself is fine.
    fields[field] = {"email": seller.email, "password": PASSWORD}.get(field) or csrf_token(
        flow.client.get(url).get_data(as_text=True))
    assert flow.client.post(url, data=fields, content_type="multipart/form-data").status_code == 302


def test_a_nul_in_the_user_agent_is_not_stored(app, flow, seller):
    """PostgreSQL text cannot hold NUL; some WSGI servers pass one on in a header."""
    from idp.models import BrowserSession

    flow.client.environ_base["HTTP_USER_AGENT"] = "Mozilla/5.0\x00 (X11)\x07"
    resp = flow.sign_in(flow.authorize())
    assert resp.status_code == 302 and "code=" in resp.headers["Location"]
    assert db.session.scalar(db.select(BrowserSession.user_agent)) == "Mozilla/5.0 (X11)"


def test_raw_bytes_that_are_not_utf8_in_the_query_are_a_400(app):
    """PEP 3333 lets a server pass the query string's raw bytes on (as latin-1 characters)."""
    for path in ("/authorize", "/logout"):
        env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "x=\xff\xfe", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "5000", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""),
               "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.errors": io.StringIO()}
        status = []
        with app.app_context():
            body = b"".join(app(env, lambda s, h, exc=None: status.append(s)))
        assert status[0].startswith("400"), (path, status, body[:300])
        assert b"not UTF-8" in body


LIVE_PAGES = ["password", "consent", "logout", "everywhere", "authorize"]


def test_no_request_to_a_live_sign_in_or_logout_gets_a_server_error(client, flow, seller, third_party_rp):
    """The fuzz above sends dead ids and no session; this one fuzzes the pages past those
    checks: a live sign-in's password and consent steps, the logout confirmation and sign out
    everywhere, with a signed-in session and (mostly) a valid CSRF token."""
    from werkzeug.datastructures import MultiDict

    from tests.conftest import Flow, csrf_token

    tokens = flow.redeem(flow.login_code()).get_json()
    rnd = random.Random(20261207)
    # The test client cannot send a lone surrogate; the WSGI fuzz above does.
    values = [v for v in _values(tokens, flow.rp) if v != "\ud800"] + ["allow", "deny", "confirm", "Allow", "Deny"]
    names = PARAMS + ["allow", "deny", "confirm", "logout_id", "email", "password"]
    failures = []
    for _ in range(300):
        third, kind = Flow(client, third_party_rp), rnd.choice(LIVE_PAGES)
        if kind == "password":
            url = flow.authorize(prompt="login").headers["Location"]
        elif kind == "consent":
            url = third.authorize().headers["Location"]
            if "/password" in url:
                url = third.sign_in(third.authorize()).headers.get("Location", url)
        else:
            url = {"logout": "/logout/confirm", "everywhere": "/account/sign-out-everywhere",
                   "authorize": "/authorize"}[kind]
        html = client.get("/logout" if kind == "logout" else url).get_data(as_text=True) if kind != "authorize" else ""
        pairs = [("csrf_token", csrf_token(html) if 'name="csrf_token"' in html else "x")] if rnd.random() < 0.9 else []
        if 'name="logout_id"' in html:
            pairs.append(("logout_id", html.split('name="logout_id" type="hidden" value="')[1].split('"')[0]))
        pairs += [(rnd.choice(names), rnd.choice(values)) for _ in range(rnd.randint(0, 5))]
        if kind == "authorize" and rnd.random() < 0.5:
            resp = client.get(url, query_string=MultiDict(pairs))
        else:
            resp = client.post(url, data=MultiDict(pairs))
        if resp.status_code >= 500:
            failures.append((kind, url, pairs, resp.status_code, resp.get_data(as_text=True)[:200]))
        if rnd.random() < 0.1:  # signed in again now and then: the session a logout may have ended
            flow.login_code()
    assert not failures, failures[:3]
