"""Helpers of the logout suites: a real relying-party back-channel logout endpoint
(OpenID Back-Channel Logout 1.0 §2.5), and a fixture for tests that drive several browsers."""

from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


class LogoutReceiver:
    def __init__(self):
        self.received: list[dict] = []  # {"content_type", "form", "path"}
        self.status = 200
        self.location: str | None = None  # sent with the status when set (a redirecting RP)
        self.release = threading.Event()  # cleared: the endpoint hangs until set (a slow RP)
        self.release.set()
        self.delivered = threading.Event()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/backchannel-logout"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @Request.application
    def _app(self, request: Request) -> Response:
        self.release.wait(10)
        self.received.append({"content_type": request.mimetype, "form": request.form.to_dict(flat=False),
                              "path": request.path, "method": request.method})
        self.delivered.set()
        headers = {"Cache-Control": "no-store", **({"Location": self.location} if self.location else {})}
        return Response("", status=self.status, headers=headers)

    @property
    def tokens(self) -> list[str]:
        return [r["form"]["logout_token"][0] for r in self.received if "logout_token" in r["form"]]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver():
    with LogoutReceiver() as r:
        yield r
