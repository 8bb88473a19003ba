"""Reading authlib's OAuth2Request from a WSGI environ (idp.oauth.requests), as werkzeug would."""

import io

import pytest

from idp.oauth.requests import MAX_BODY, BodyTooLarge, WSGIRequest

ISSUER = "https://idp.example.com"


def environ(body: bytes = b"", method="POST", ctype="application/x-www-form-urlencoded", query="", **extra):
    env = {"REQUEST_METHOD": method, "PATH_INFO": "/token", "QUERY_STRING": query, "wsgi.input": io.BytesIO(body),
           "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": ctype, "wsgi.url_scheme": "http",
           "HTTP_AUTHORIZATION": "Basic eDp5"}
    env.update(extra)
    return env


def test_form_args_and_payload():
    req = WSGIRequest(environ(b"grant_type=refresh_token&resource=a&resource=b&empty=", query="x=1"), ISSUER)
    assert req.form.get("grant_type") == "refresh_token"
    assert req.form.getlist("resource") == ["a", "b"]
    assert req.form.get("empty") == ""  # blank values kept, as werkzeug does
    assert req.args.get("x") == "1" and "x" not in req.form
    assert req.payload.data.getlist("resource") == ["a", "b"] and "x" not in req.payload.data
    assert req.payload.datalist["resource"] == ["a", "b"]
    assert req.payload.grant_type == "refresh_token"
    assert req.headers.get("Authorization") == "Basic eDp5"
    assert req.uri == ISSUER + "/token"  # the issuer's URL, whatever scheme the worker saw


def test_a_posts_parameters_are_its_body_alone():
    """A query on a POST is not merged into its parameters (RFC 6749 §3.2): one place each."""
    req = WSGIRequest(environ(b"grant_type=client_credentials", query="scope=admin&client_secret=s"), ISSUER)
    assert req.payload.scope is None and "client_secret" not in req.payload.data
    assert WSGIRequest(environ(method="GET", query="scope=a"), ISSUER).payload.scope == "a"


@pytest.mark.parametrize("ctype", ["application/json", "text/plain", "multipart/form-data; boundary=x", ""])
def test_body_is_a_form_only_when_it_says_so(ctype):
    assert not WSGIRequest(environ(b"grant_type=x", ctype=ctype), ISSUER).form


def test_content_type_parameters_and_case():
    req = WSGIRequest(environ(b"a=1", ctype="Application/X-WWW-Form-Urlencoded; charset=UTF-8"), ISSUER)
    assert req.form.get("a") == "1"


def test_percent_encoding_and_bad_utf8():
    req = WSGIRequest(environ(b"a=%C3%A9+x&b=%FF&c=\xc3\xa9"), ISSUER)
    assert req.form.get("a") == "\u00e9 x"
    assert req.form.get("b") == "\ufffd" and req.form.get("c") == "\u00e9"


def test_get_reads_no_body():
    assert not WSGIRequest(environ(b"a=1", method="GET"), ISSUER).form


@pytest.mark.parametrize("length", ["", "nonsense", "-5"])
def test_unusable_length_reads_nothing(length):
    assert not WSGIRequest(environ(b"a=1", CONTENT_LENGTH=length), ISSUER).form


def test_declared_length_over_the_limit_is_refused_unread():
    stream = io.BytesIO(b"a=1")
    with pytest.raises(BodyTooLarge):
        WSGIRequest(environ(b"", CONTENT_LENGTH=str(MAX_BODY + 1), **{"wsgi.input": stream}), ISSUER)
    assert stream.tell() == 0


def test_unterminated_stream_without_length():
    assert WSGIRequest(environ(b"a=1", CONTENT_LENGTH="", **{"wsgi.input_terminated": True}), ISSUER).form["a"] == "1"
    with pytest.raises(BodyTooLarge):
        WSGIRequest(environ(b"a=" + b"x" * MAX_BODY, CONTENT_LENGTH="", **{"wsgi.input_terminated": True}), ISSUER)


def test_query_string_is_latin1_text_of_utf8_bytes():
    raw = "r=\u00e9".encode().decode("latin-1")  # PEP 3333
    assert WSGIRequest(environ(query=raw), ISSUER).args.get("r") == "\u00e9"


def test_has_every_attribute_authlib_sets():
    """WSGIRequest sets authlib's request attributes itself (no per-request transport check)."""
    from authlib.oauth2.rfc6749 import OAuth2Request

    assert set(vars(OAuth2Request("POST", ISSUER + "/token"))) <= set(vars(WSGIRequest(environ(), ISSUER)))


def test_a_posts_query_is_not_even_parsed_unless_asked(monkeypatch):
    """Ignored anyway, a 60 KB query cost 16 ms of parsing on every /token request that sent
    one (a review of resource limits); it is parsed only when something reads ``args``."""
    from idp.oauth import requests as oauth_requests

    parsed = []
    real = oauth_requests._parse
    monkeypatch.setattr(oauth_requests, "_parse", lambda text: parsed.append(text) or real(text))
    req = WSGIRequest(environ(b"grant_type=client_credentials", query="x=" + "y" * 60000), ISSUER)
    assert req.payload.grant_type == "client_credentials" and parsed == ["grant_type=client_credentials"]
    assert req.args.get("x") == "y" * 60000 and len(parsed) == 2  # read when asked (UserInfo does)
