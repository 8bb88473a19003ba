"""`idp serve` itself (granian, two workers): its limits on what a client sends, and its metrics."""

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


def _served(issuer: str, token: str, endpoint: str) -> float:
    body = requests.get(issuer + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10).text
    prefix = "idp_http_request_duration_seconds_count{"
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith(prefix) and f'endpoint="{endpoint}"' in line)


def test_metrics_add_up_every_worker_whichever_answers_the_scrape(production_idp_server):
    """Each worker counts in its own process: without prometheus-client's multiprocess mode
    (`idp serve` prepares it before the workers start), a scrape would show the counts of the
    worker that answered it, about half of them."""
    issuer, token = production_idp_server.issuer, production_idp_server.metrics_token
    before = _served(issuer, token, "discovery.jwks")
    for _ in range(40):  # a connection each: the kernel spreads them over both workers
        assert requests.get(issuer + "/jwks", timeout=10).status_code == 200
    for _ in range(4):  # whichever worker answers each scrape
        assert _served(issuer, token, "discovery.jwks") - before == 40
