"""Real processes for the end-to-end tier: the IdP and the relying parties of clients/.

Session-scoped: the IdP is set up once with its operator CLI (``idp demo``: migrate,
keys, the clients of config/clients.toml, the demo seller), then served by ``flask run``
(threaded: a back-channel logout makes the RP fetch the JWKS while the IdP waits) on a
free loopback port. The clients file is config/clients.toml with every RP moved to a
free port, plus two test clients. Each process is stopped by its PID in a finalizer.
"""

from __future__ import annotations

import os
import tomllib

import pytest

from tests.servers import free_port

from .stack import PASSWORD, PY, RP_PORTS, Process, Stack, clients_toml, set_up_idp


@pytest.fixture(scope="session")
def idp_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    ports = {name: free_port() for name in [*RP_PORTS, "idp", "api", "e2e_rp"]}
    issuer = f"http://127.0.0.1:{ports['idp']}"
    clients_file = tmp / "clients.toml"
    clients_file.write_text(clients_toml(ports, "e2e-only-test-secret"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDP_", "FLASK_"))}
    env.update(
        IDP_ISSUER=issuer, IDP_DATABASE_URL=f"sqlite:///{tmp / 'idp.sqlite3'}", IDP_KEYS_DIR=str(tmp / "keys"),
        IDP_INSTANCE_PATH=str(tmp / "instance"), IDP_CLIENTS_FILE=str(clients_file), IDP_REDIS_URL="memory://",
        IDP_CONFIG_FILE=str(tmp / "no-idp.toml"), IDP_DEMO_PASSWORD=PASSWORD, PYTHONUNBUFFERED="1",
        BACKEND_API_URL=f"http://127.0.0.1:{ports['api']}",
    )
    stack = Stack(issuer=issuer, tmp=tmp, clients_file=clients_file, env=env, ports=ports)
    stack.secrets = {t["client_id"]: t.get("secret") for t in tomllib.loads(clients_file.read_text())["clients"]}
    set_up_idp(env)
    server = Process("idp", [PY, "-m", "flask", "--app", "idp:create_server_app()", "run", "--host", "127.0.0.1", "--port",
                             str(ports["idp"]), "--no-reload", "--no-debugger", "--with-threads"], env, tmp / "idp.log")
    try:
        server.wait_ready(issuer + "/.well-known/openid-configuration")
        yield stack
    finally:
        server.stop()


@pytest.fixture(scope="session")
def relying_parties(idp_server):
    """clients/run.py: dashboard, portals, integrator and backend API, against the test IdP."""
    rps = Process("clients.run", [PY, "-m", "clients.run"], idp_server.env, idp_server.tmp / "clients.log")
    try:
        for name in ("dashboard", "portal_na", "portal_eu", "api"):
            rps.wait_ready(idp_server.rp_url(name) + "/")
        yield idp_server
    finally:
        rps.stop()
