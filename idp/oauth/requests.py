"""authlib's framework-agnostic OAuth2Request, read straight from a WSGI environ.

The machine-to-machine endpoints (idp.oauth.endpoints) run authlib's server without
Flask's request machinery. authlib needs little from a request: the method, the
headers, the query (``args``), the form body (``form``) and both together
(``payload.data``, as werkzeug's ``request.values``). This builds exactly that.

Parsing follows werkzeug's rules: the body is read only for
``application/x-www-form-urlencoded`` (RFC 6749 §3.2, RFC 7662 §2.1, RFC 7009 §2.1),
blank values are kept, undecodable bytes become U+FFFD, and a body without a length is
read only when the server says the stream ends. Bodies over MAX_BODY are refused before
they are read.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request
from werkzeug.datastructures import EnvironHeaders, MultiDict

MAX_BODY = 64 * 1024  # a client assertion (4 KiB, idp.oauth.params) and a few more parameters
FORM = "application/x-www-form-urlencoded"


class BodyTooLarge(Exception):
    """The declared or actual body is over MAX_BODY (413)."""


def _parse(text: str) -> list[tuple[str, str]]:
    return parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace")


def read_form(environ) -> list[tuple[str, str]]:
    if environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower() != FORM:
        return []
    stream = environ["wsgi.input"]
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        length = None
    if length is not None and length >= 0:
        if length > MAX_BODY:
            raise BodyTooLarge
        body = stream.read(length) if length else b""
    elif environ.get("wsgi.input_terminated"):
        body = stream.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise BodyTooLarge
    else:
        body = b""  # no length and no end marker: werkzeug reads nothing either
    return _parse(body.decode("utf-8", "replace"))


class Payload(OAuth2Payload):
    def __init__(self, data: MultiDict):
        self._data = data

    @property
    def data(self) -> MultiDict:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._data.to_dict(flat=False)


class WSGIRequest(OAuth2Request):
    """An OAuth2Request for authlib's grants and endpoints, from a WSGI environ.

    ``uri`` is the issuer's URL of the endpoint, not one rebuilt from the Host header:
    behind a TLS-terminating load balancer the worker sees plain http, and authlib refuses
    non-https URIs (InsecureTransportError) although the client did use https.
    """

    def __init__(self, environ, issuer: str):
        # OAuth2Request.__init__ would check the transport of the URI on every request
        # (urlsplit, ipaddress): a tenth of a client_credentials request. The URI is the
        # issuer's, which idp.oauth.endpoints checks once, so the attributes are set
        # here; tests/unit/test_oauth_wsgi_request.py checks they are all of authlib's.
        method = environ.get("REQUEST_METHOD", "GET")
        self.method, self.uri, self.headers = method, issuer + environ.get("PATH_INFO", ""), EnvironHeaders(environ)
        self._body = None
        self.client = self.auth_method = self.user = self.authorization_code = None
        self.refresh_token = self.credential = self._scope = None
        self._query, self._args = environ.get("QUERY_STRING", ""), None
        self._form = MultiDict(read_form(environ) if method == "POST" else [])
        # The parameters of a POST are its body alone (RFC 6749 §3.2, RFC 7662 §2.1,
        # RFC 7009 §2.1), as in oidc-provider: a query on /token is ignored, not merged
        # as werkzeug's request.values would, so no parameter (a scope, a secret) is
        # taken from a URL that ends up in access logs, and each is read from one place.
        self.payload = Payload(self._form if method == "POST" else self.args)

    @property
    def args(self) -> MultiDict:
        """The query, parsed when first asked for: a POST's is ignored, and parsing a 60 KB
        one cost 16 ms of a worker on every /token request that sent it."""
        if self._args is None:
            query = self._query  # PEP 3333: latin-1 text of the raw bytes
            self._args = MultiDict(_parse(query.encode("latin-1", "replace").decode("utf-8", "replace"))
                                   if query else [])
        return self._args

    @property
    def form(self) -> MultiDict:
        return self._form
