"""Seller identity provider: an OpenID Connect issuer built on Flask and authlib."""

import logging
import os

from flask import Flask

from . import config as config_mod


def engine_options(config) -> dict:
    # No pre-ping: a round trip per request (README "Database connections"). hide_parameters:
    # a database error's message (logged with the request id) never quotes the statement's
    # values, which can be password hashes, keyed token hashes or an email address.
    options: dict = {"pool_pre_ping": False, "hide_parameters": True}
    if str(config["DATABASE_URL"]).startswith("postgresql"):
        from sqlalchemy.engine import make_url

        options["connect_args"] = pg_connect_args(config, make_url(config["DATABASE_URL"]))
    return options


def pg_connect_args(config, url) -> dict:
    """libpq settings of every PostgreSQL connection (the pool's and the refresh grant's own):
    a bounded connect, and a peer that went away found: a request whose bytes stay
    unacknowledged for 15 s (a host gone, a network partition) fails its connection
    (tcp_user_timeout; Linux's default retransmissions last about 15 minutes), and an idle
    connection whose keepalives go unanswered is dropped. A server that stalls but whose
    kernel still acknowledges (a frozen process) is not found this way: see README, Probes.
    A setting in the DATABASE_URL's query (``?keepalives_idle=300``) wins over these."""
    defaults = {"connect_timeout": int(config["DATABASE_CONNECT_TIMEOUT"]), "keepalives": 1, "keepalives_idle": 30,
                "keepalives_interval": 10, "keepalives_count": 3, "tcp_user_timeout": 15000}
    return {key: value for key, value in defaults.items() if key not in url.query}


def create_app(overrides: dict | None = None) -> Flask:
    app = Flask(__name__, instance_path=os.path.abspath(os.environ.get("IDP_INSTANCE_PATH", "instance")))
    app.config.update(config_mod.load(app.instance_path, overrides))
    if app.config["ENV"] == "production":
        app.debug = False  # Flask takes FLASK_DEBUG from the environment: never in production
    secure = app.config["ISSUER"].startswith("https://")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=app.config["DATABASE_URL"],
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(app.config),
        SESSION_COOKIE_NAME="__Host-idp_flask" if secure else "idp_flask",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        WTF_CSRF_TIME_LIMIT=None,  # bound to the session cookie; the sign-in itself has a TTL
    )
    os.makedirs(app.instance_path, exist_ok=True)
    from .ops import logs

    logs.configure(app.config["LOG_FORMAT"])

    from . import errors, extensions, models  # noqa: F401  (models registers the tables)
    from .crypto.keys import KeyRing
    from .ops import transactions
    from .store import create_store
    from .web import headers, methods

    extensions.db.init_app(app)
    transactions.register(app, extensions.db)  # after init_app: runs before its session teardown
    extensions.migrate.init_app(app, extensions.db, directory=os.path.join(os.path.dirname(__file__), "migrations"))
    extensions.csrf.init_app(app)
    app.extensions["idp.store"] = create_store(app.config["REDIS_URL"], app.config["STORE_NAMESPACE"])
    app.extensions["idp.keyring"] = KeyRing(_key_storage(app), app.config["KEY_PUBLISH_AHEAD"],
                                            app.config["SECRET_KEY"], app.config["KEYS_ACCEPT_CLEAR"])
    if app.config["KEYS_STORE"] == "directory":
        app.extensions["idp.keyring"].ensure()  # first start: generate the signing keys

    from . import ops
    from .login import views as login_views
    from .logout import views as logout_views
    from .oauth import discovery, endpoints, server, views as oauth_views

    server.init_app(app)
    for bp in (oauth_views.bp, login_views.bp, logout_views.bp):
        app.register_blueprint(bp)
    errors.register(app)
    headers.register(app)
    methods.register(app)  # HEAD only where a GET changes nothing
    ops.init_app(app)  # /healthz, /readyz, /metrics, request timing
    app.wsgi_app = endpoints.Endpoints(app, app.wsgi_app)  # /token, /introspect, /revoke, /userinfo
    app.wsgi_app = discovery.Documents(app, app.wsgi_app)  # discovery and JWKS answered before Flask
    if app.config["PROXY_HOPS"]:
        # Behind a load balancer the peer is the balancer: the client's address (recorded
        # with each browser session) and scheme come from the headers the trusted hops
        # append (Werkzeug's ProxyFix; RFC 7239's Forwarded is not read). The host never
        # does: every URL is built from ISSUER.
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0, x_port=0, x_prefix=0)
    return app


def _key_storage(app: Flask):
    """KEYS_STORE: "directory" (KEYS_DIR) or "database" (idp.crypto.key_storage)."""
    from .crypto.key_storage import DatabaseStorage, DirectoryStorage
    from .extensions import db

    if app.config["KEYS_STORE"] == "directory":
        return DirectoryStorage(app.config["KEYS_DIR"])
    with app.app_context():
        return DatabaseStorage(db.engine)


def create_server_app(overrides: dict | None = None) -> Flask:
    """The app of a serving process (idp.wsgi for `idp serve`; `make run`): create_app, plus
    this process's maintenance scheduler (idp.ops.maintenance), which neither the CLI nor
    the tests want."""
    app = create_app(overrides)
    from .ops import maintenance

    if app.config["KEYS_STORE"] == "database":
        # Only a serving process generates the first keys in the database: a CLI process
        # (`idp db upgrade` before the table exists, `idp keys import` before the keys are
        # moved in) must not.
        from . import errors

        try:
            app.extensions["idp.keyring"].ensure()
        except errors.UNAVAILABLE as exc:
            # A worker started again during a database outage (one that died, OOM-killed)
            # must start all the same: exiting, it would be respawned and die again, and
            # granian takes a crash loop for a reason to stop every worker, the healthy ones
            # too. The keys are read at their first use (a 503 until the database answers);
            # the first ones of a new install come with `idp serve`'s first start, which
            # checks the database before any worker runs.
            logging.getLogger("idp.keys").warning("signing keys not read at start, the database is unavailable "
                                                  "(%s); read at first use", type(exc).__name__)
    from .login import password

    with app.app_context():
        password.prepare()
    maintenance.start(app)
    return app
