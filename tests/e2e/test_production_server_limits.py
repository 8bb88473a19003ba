"""`idp serve`'s limits on what a client sends, against the production server itself (granian)."""

import socket
from urllib.parse import urlsplit

import requests


def test_a_request_head_over_64_kib_is_refused_and_a_long_authorization_url_is_not(production_idp_server):
    """granian took request heads of about 408 KiB: a 390 KiB Cookie header cost a worker
    50-70 ms per page. 64 KiB still takes an authorization request at its parameters' limits."""
    issuer = production_idp_server.issuer
    discovery = issuer + "/.well-known/openid-configuration"
    assert requests.get(discovery, headers={"X-Long": "a" * 30_000}, timeout=10).status_code == 200
    host, port = urlsplit(issuer).hostname, urlsplit(issuer).port
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"GET /.well-known/openid-configuration HTTP/1.1\r\nHost: x\r\nCookie: "
                  + b"a" * (100 * 1024) + b"\r\n\r\n")
        answer = s.recv(200)
    assert answer == b"" or answer.split(b" ", 2)[1] in (b"400", b"431"), answer
