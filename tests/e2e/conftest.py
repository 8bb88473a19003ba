"""Real processes for the end-to-end tier: the IdP and the relying parties of clients/.

Session-scoped: the IdP is set up once with its operator CLI (``idp demo``: migrate,
keys, the clients of config/clients.toml, the demo seller), then served by ``flask run``
(threaded: a back-channel logout makes the RP fetch the JWKS while the IdP waits) on a
free loopback port. The clients file is config/clients.toml with every RP moved to a
free port, plus two test clients. Each process is stopped by its PID in a finalizer.

``production_idp_server`` is the same set-up served as production serves it: `idp serve`
(granian, two workers, ENV=production) on PostgreSQL and Redis; the browser tests run
against both.
"""

from __future__ import annotations

import os
import tomllib

import pytest
import requests

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


def _relying_parties(stack: Stack):
    """clients/run.py: dashboard, portals, integrator and backend API, against ``stack``'s IdP."""
    rps = Process("clients.run", [PY, "-m", "clients.run"], stack.env, stack.tmp / "clients.log")
    try:
        for name in ("dashboard", "portal_na", "portal_eu", "api"):
            rps.wait_ready(stack.rp_url(name) + "/")
        yield stack
    finally:
        rps.stop()


@pytest.fixture(scope="session")
def relying_parties(idp_server):
    yield from _relying_parties(idp_server)


@pytest.fixture(scope="session")
def production_idp_server(tmp_path_factory, postgres_url, redis_url):
    """The IdP as production runs it: `idp serve` (granian, two workers, ENV=production) on a
    PostgreSQL database of its own and Redis, the signing keys in the database. The two
    workers answer a browser's requests in turn, as two processes behind a balancer would."""
    import secrets

    import psycopg
    from sqlalchemy.engine import make_url

    tmp = tmp_path_factory.mktemp("e2e-production")
    ports = {name: free_port() for name in [*RP_PORTS, "idp", "api", "e2e_rp"]}
    issuer = f"http://127.0.0.1:{ports['idp']}"
    clients_file = tmp / "clients.toml"
    clients_file.write_text(clients_toml(ports, "e2e-only-test-secret"))
    (tmp / "idp.toml").write_text("# production reads this file; the settings are in the environment\n")
    database = f"e2e_{secrets.token_hex(4)}"
    admin_dsn = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDP_", "FLASK_"))}
    env.update(
        IDP_ISSUER=issuer, IDP_KEYS_STORE="database", IDP_KEYS_DIR=str(tmp / "keys-unused"),
        IDP_DATABASE_URL=make_url(postgres_url).set(drivername="postgresql+psycopg", database=database)
        .render_as_string(False),
        IDP_REDIS_URL=redis_url, IDP_STORE_NAMESPACE=f"{database}:", IDP_SECRET_KEY=secrets.token_urlsafe(32),
        IDP_INSTANCE_PATH=str(tmp / "instance"), IDP_CLIENTS_FILE=str(clients_file),
        IDP_CONFIG_FILE=str(tmp / "idp.toml"), IDP_DEMO_PASSWORD=PASSWORD, PYTHONUNBUFFERED="1",
        BACKEND_API_URL=f"http://127.0.0.1:{ports['api']}",
    )
    stack = Stack(issuer=issuer, tmp=tmp, clients_file=clients_file, env=env, ports=ports,
                  metrics_token=secrets.token_urlsafe(24))
    stack.secrets = {t["client_id"]: t.get("secret") for t in tomllib.loads(clients_file.read_text())["clients"]}
    set_up_idp(env)  # `idp demo` is for development: the same database, keys and secret
    server = Process("idp serve", [PY, "-c", "from idp.cli import main; main()", "serve", "--workers", "2",
                                   "--bind", f"127.0.0.1:{ports['idp']}"],
                     {**env, "IDP_ENV": "production", "IDP_METRICS_TOKEN": stack.metrics_token}, tmp / "idp.log")
    try:
        server.wait_ready(issuer + "/readyz")
        assert requests.get(issuer + "/metrics", timeout=10).status_code == 401  # the token, or nothing
        yield stack
    finally:
        server.stop()  # SIGTERM to the server's PID: granian stops its workers
        with psycopg.connect(admin_dsn, autocommit=True) as admin:  # IDP_TEST_DATABASE_URL's server may be kept
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="session")
def production_relying_parties(production_idp_server):
    yield from _relying_parties(production_idp_server)
