"""Exact redirect URI matching, and the loopback port exception of RFC 8252 §7.3."""

import pytest

from idp.oauth.redirect_uri import matches

REGISTERED = ["https://rp.example.com/cb", "http://127.0.0.1/callback", "http://[::1]/callback",
              "com.example.seller:/oauth2redirect"]

CASES = [
    ("https://rp.example.com/cb", False, True),
    ("https://rp.example.com/cb/", False, False),
    ("https://rp.example.com/cb?x=1", False, False),
    ("https://rp.example.com/CB", False, False),
    ("http://127.0.0.1:51000/callback", True, True),
    ("http://127.0.0.1:51000/callback", False, False),  # web clients get no leeway
    ("http://[::1]:51000/callback", True, True),
    ("http://localhost:51000/callback", True, False),  # §8.3: loopback IP literal, not "localhost"
    ("http://127.0.0.1:51000/other", True, False),
    ("http://127.0.0.1:51000/callback?x=1", True, False),
    ("https://127.0.0.1:51000/callback", True, False),
    ("http://127.0.0.1:notaport/callback", True, False),
    ("http://user@127.0.0.1:51000/callback", True, False),
    # Only the port may differ: nothing else after the IP literal.
    ("http://[::1]evil.example/callback", True, False),
    ("http://[::1]x:1234/callback", True, False),
    ("http://[::1]:/callback", True, False),
    ("http://127.0.0.1.evil.example/callback", True, False),
    ("com.example.seller:/oauth2redirect", True, True),
    ("com.example.seller:/other", True, False),
]


@pytest.mark.parametrize("uri,native,expected", CASES)
def test_matches(uri, native, expected):
    assert matches(uri, REGISTERED, native) is expected
