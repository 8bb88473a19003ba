"""Seller App: a native app (OAuth 2.0 for Native Apps, RFC 8252), simulated on the command line.

A native app cannot keep a secret, so it is a public client (auth method none) and PKCE
(RFC 7636) is what stops a stolen code from being redeemed (RFC 8252 §8.1). It signs in
through the system browser, never an embedded web view (§8.12), and receives the code
on a loopback redirect: an HTTP listener on 127.0.0.1 on a port chosen at run time
(§7.3; the IdP accepts any port for a registered loopback URI). Tokens stay in memory.

``NativeApp.sign_in(open_browser)`` takes the "open the system browser" step as a
callable, so a test can play the browser.
"""

from __future__ import annotations

import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

CLIENT_ID = "seller-mobile"
SCOPE = "openid email profile offline_access"
DONE_PAGE = b"<!doctype html><title>Seller App</title><p>Signed in. You can close this tab and go back to the app."


def _same_state(received: str | None, sent: str | None) -> bool:
    """The response's state is the request's, compared in constant time (it is the secret that
    binds the response to this app's request)."""
    # As bytes: compare_digest refuses str holding anything but ASCII (?state=%C3%A9).
    return received is not None and sent is not None and secrets.compare_digest(received.encode(), sent.encode())


class SignInError(RuntimeError):
    pass


class SignInAgain(SignInError):
    """The grant is over (the refresh token refused: revoked, expired, signed out everywhere):
    the tokens are dropped and the seller must sign in again."""


class LoopbackReceiver:
    """A one-shot HTTP listener on 127.0.0.1, any free port (RFC 8252 §7.3, §8.3)."""

    def __init__(self, path: str = "/callback"):
        self.url: str | None = None
        self.state: str | None = None  # the request's; set before the browser is opened
        self.received = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            # Any local process can open a connection and send nothing (RFC 8252 §8.3): each
            # connection has its own thread (ThreadingHTTPServer) and this long to ask.
            timeout = 5

            def do_GET(self):
                if urlsplit(self.path).path != path or receiver.received.is_set():
                    self.send_error(404)
                    return
                # Any local process or web page can reach a loopback port (RFC 8252 §8.3): only
                # the response carrying our state is the IdP's; anything else is turned away
                # and the listener waits on for the real one (errors carry state too, §4.1.2.1).
                state = parse_qs(urlsplit(self.path).query).get("state", [None])[0]
                if not _same_state(state, receiver.state):
                    self.send_error(400, "not the response to this app's request")
                    return
                with receiver.lock:  # two copies of the real response: the first one counts
                    if receiver.url is not None:
                        self.send_error(404)
                        return
                    receiver.url = f"http://127.0.0.1:{self.server.server_port}{self.path}"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(DONE_PAGE)
                receiver.received.set()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # loopback IP literal, not "localhost" (§8.3)
        self.redirect_uri = f"http://127.0.0.1:{self.server.server_port}{path}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def wait(self, timeout: float) -> str:
        if not self.received.wait(timeout):
            raise SignInError(f"no authorization response on {self.redirect_uri} within {timeout} s")
        return self.url

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class NativeApp:
    def __init__(self, issuer: str, client_id: str = CLIENT_ID, scope: str = SCOPE, timeout: float = 10):
        self.issuer, self.client_id, self.scope, self.timeout = issuer.rstrip("/"), client_id, scope, timeout
        resp = requests.get(self.issuer + "/.well-known/openid-configuration", timeout=timeout)
        resp.raise_for_status()
        self.metadata = resp.json()
        if self.metadata.get("issuer") != self.issuer:  # Discovery §4.3
            raise SignInError("the discovery document names another issuer")
        self.tokens: dict | None = None  # in memory only: never written to disk here
        self.claims: dict | None = None
        self._jwks: dict | None = None
        # One refresh at a time: two API calls finding the access token expired at once
        # would both send the one refresh token, and the second reads as reuse (RFC 9700
        # §4.14.2), which revokes the grant and signs the seller out.
        self._refreshing = threading.Lock()

    def _client(self, **kwargs) -> OAuth2Session:
        return OAuth2Session(self.client_id, token_endpoint_auth_method="none", scope=self.scope,
                             code_challenge_method="S256", default_timeout=self.timeout, **kwargs)

    def sign_in(self, open_browser: Callable[[str], None], timeout: float = 120) -> dict:
        """Run the authorization code flow; returns the verified ID token claims."""
        receiver = LoopbackReceiver()
        try:
            client = self._client(redirect_uri=receiver.redirect_uri)
            verifier, nonce = generate_token(48), generate_token(20)
            url, state = client.create_authorization_url(
                self.metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
            receiver.state = state
            open_browser(url)
            callback = receiver.wait(timeout)
        finally:
            receiver.close()
        params = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
        if not _same_state(params.get("state"), state):  # the receiver let only ours through; checked all the same
            raise SignInError("state does not match")
        if params.get("iss") != self.issuer:  # RFC 9207: a response from another IdP (mix-up)
            raise SignInError("authorization response from an unexpected issuer")
        if "error" in params:
            raise SignInError(f"{params['error']}: {params.get('error_description', '')}")
        if not params.get("code"):
            raise SignInError("the authorization response has no code")
        token = dict(client.fetch_token(self.metadata["token_endpoint"], code=params["code"], code_verifier=verifier))
        self.claims = self.verify_id_token(token, nonce)
        self.tokens = token
        return self.claims

    def refresh(self) -> dict:
        """Use the refresh token. The IdP rotates it, so the new tokens are kept the moment
        they arrive: were the ID token's check to fail on the network (the JWKS), a retry
        with the spent token would read as reuse and revoke the grant (RFC 9700 §4.14.2).
        A refused refresh token (invalid_grant) ends the grant: SignInAgain. Calls at once
        refresh once: a call that waited for another's gets that one's tokens."""
        wanted = self.tokens  # the tokens this caller found expired
        with self._refreshing:
            if self.tokens is not wanted and self.tokens is not None:
                return self.tokens  # refreshed by the call this one waited for
            return self._refresh()

    def _refresh(self) -> dict:
        old = self.tokens
        try:
            new = dict(self._client().refresh_token(self.metadata["token_endpoint"],
                                                    refresh_token=old["refresh_token"]))
        except OAuthError as exc:
            if exc.error != "invalid_grant":
                raise
            self.tokens = self.claims = None
            raise SignInAgain(f"the sign-in is over ({exc.description}): sign in again") from exc
        fresh_id_token = "id_token" in new
        new.setdefault("refresh_token", old["refresh_token"])
        self.tokens = new
        if fresh_id_token:  # a network error checking it (the JWKS) propagates, the new tokens kept
            try:
                claims = self.verify_id_token(new, None)
                if claims["sub"] != self.claims["sub"]:  # OIDC Core §12.2
                    raise SignInError("the refreshed ID token is about another subject")
            except (JoseError, AuthlibBaseError, SignInError, KeyError) as exc:
                self._revoke(new["refresh_token"])  # a grant we will not use: no live refresh token left
                self.tokens = self.claims = None
                raise SignInAgain(f"the refreshed ID token is not valid ({exc}): sign in again") from exc
        return new

    def _revoke(self, refresh_token: str) -> None:
        """RFC 7009, best effort (a public client names itself)."""
        endpoint = self.metadata.get("revocation_endpoint")
        if not endpoint:
            return
        try:
            requests.post(endpoint, timeout=self.timeout, data={
                "token": refresh_token, "token_type_hint": "refresh_token", "client_id": self.client_id})
        except requests.RequestException:
            pass

    def userinfo(self) -> dict:
        resp = requests.get(self.metadata["userinfo_endpoint"], timeout=self.timeout,
                            headers={"Authorization": f"Bearer {self.tokens['access_token']}"})
        resp.raise_for_status()
        info = resp.json()
        if not isinstance(info, dict) or info.get("sub") != self.claims["sub"]:
            raise SignInError("UserInfo is about another subject")  # OIDC Core §5.3.2: must not be used
        return info

    def verify_id_token(self, token: dict, nonce: str | None) -> dict:
        """Signature against the JWKS, then OIDC Core §3.1.3.7: iss, aud, exp, iat, nonce, at_hash."""
        algs = self.metadata.get("id_token_signing_alg_values_supported", ["RS256"])
        try:
            decoded = jwt.decode(token["id_token"], KeySet.import_key_set(self._keys()), algorithms=algs)
        except InvalidKeyIdError:
            decoded = jwt.decode(token["id_token"], KeySet.import_key_set(self._keys(force=True)), algorithms=algs)
        claims = CodeIDToken(decoded.claims, decoded.header,
                             {"iss": {"essential": True, "value": self.issuer},
                              "aud": {"essential": True, "value": self.client_id}},
                             {"nonce": nonce, "client_id": self.client_id, "access_token": token["access_token"]})
        claims.validate(leeway=60)
        return dict(claims)

    def _keys(self, force: bool = False) -> dict:
        if self._jwks is None or force:
            resp = requests.get(self.metadata["jwks_uri"], timeout=self.timeout)
            resp.raise_for_status()
            self._jwks = resp.json()
        return self._jwks
