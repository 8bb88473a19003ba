"""The processes of the end-to-end tier, and how the IdP is set up (tests/e2e/conftest.py
has the fixtures)."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
SELLER = "demo.seller@example.com"  # the account `idp demo` creates
PASSWORD = "e2e correct horse battery 42"
STARTUP_TIMEOUT = 60.0
CLI = "from idp.cli import main; main()"

# Ports of config/clients.toml, each replaced by a free one.
RP_PORTS = {"dashboard": 5001, "portal_na": 5002, "portal_eu": 5003, "portal_jp": 5004, "integrator": 5005}

TEST_CLIENTS = """
[[clients]]
client_id = "e2e-rp"
name = "E2E relying party"
secret = "{secret}-es256"
redirect_uris = ["http://127.0.0.1:{port}/callback"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["openid", "email", "profile", "offline_access"]
first_party = true
id_token_alg = "ES256"

[[clients]]
client_id = "e2e-rp-rs256"
name = "E2E relying party (RS256)"
secret = "{secret}-rs256"
redirect_uris = ["http://127.0.0.1:{port}/callback-rs256"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["openid", "email", "profile", "offline_access"]
first_party = true
"""


@dataclass
class Stack:
    issuer: str
    tmp: Path
    clients_file: Path
    env: dict
    ports: dict
    secrets: dict = field(default_factory=dict)
    metrics_token: str | None = None  # production_idp_server's METRICS_TOKEN

    def rp_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"


class Process:
    """A subprocess with its output in a log file; stop() ends it by PID."""

    def __init__(self, name: str, args: list[str], env: dict, log: Path):
        self.name, self.log = name, log
        self._fh = log.open("wb")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self._fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def wait_ready(self, url: str) -> None:
        """Poll ``url`` until it answers 200 (bounded); fail with the log if the process dies."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                resp = requests.get(url, timeout=2)
                if resp.status_code == 200:
                    return
                last = f"HTTP {resp.status_code}"
            except requests.ConnectionError as exc:
                last = exc.__class__.__name__
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: {url} not ready in {STARTUP_TIMEOUT}s (last: {last}):\n{self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to this PID only
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._fh.close()


def clients_toml(ports: dict, secret: str) -> str:
    text = (ROOT / "config" / "clients.toml").read_text()
    for name, default in RP_PORTS.items():
        text = text.replace(f"127.0.0.1:{default}/", f"127.0.0.1:{ports[name]}/")
    return text + TEST_CLIENTS.format(port=ports["e2e_rp"], secret=secret)


def _cli(args: list[str], env: dict, stdin: str | None = None) -> str:
    done = subprocess.run([PY, "-c", CLI, *args], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True,
                          timeout=180)
    if done.returncode != 0:
        raise RuntimeError(f"idp {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def set_up_idp(env: dict) -> None:
    """What `make run` does first: migrate, make keys, load the clients, create the demo seller
    (with IDP_DEMO_PASSWORD)."""
    _cli(["demo"], env)
