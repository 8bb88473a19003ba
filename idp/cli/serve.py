"""`idp serve`: the production server, gunicorn running ``idp.wsgi:app``.

The master process only reads and checks the configuration; each worker builds the app
(``preload_app`` off), so prometheus-client is first imported after
``idp.ops.prepare_multiprocess()`` has chosen multiprocess mode.
"""

import os

import click
from gunicorn.app.base import BaseApplication

from .. import config as config_mod, ops
from .common import CliError


class Server(BaseApplication):
    """gunicorn with its settings from us rather than from its own command line."""

    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)
        if "control_socket_disable" in self.cfg.settings:  # gunicorn 24+: no runtime control socket in $HOME
            self.cfg.set("control_socket_disable", True)

    def load(self):
        from ..wsgi import app  # in each worker

        return app


def settings() -> dict:
    """The configuration create_app would use, checked, without building an app."""
    instance_path = os.path.abspath(os.environ.get("IDP_INSTANCE_PATH", "instance"))
    try:
        return config_mod.load(instance_path)
    except config_mod.ConfigError as exc:
        raise CliError(f"configuration: {exc}") from None


@click.command("serve")
@click.option("--workers", type=click.IntRange(min=1), help="Default: WORKERS.")
@click.option("--bind", help="HOST:PORT; default: BIND.")
@click.option("--access-log", is_flag=True, help="Log every request to stdout.")
@click.option("--dev", is_flag=True, help="Allow ENV=development (local benchmarks only: the defaults are unsafe).")
def serve(workers, bind, access_log, dev):
    """Serve the IdP with gunicorn (sync workers)."""
    config = settings()
    if config["ENV"] != "production" and not dev:
        raise CliError("idp serve is the production server: set IDP_ENV=production (and IDP_SECRET_KEY), "
                       "or pass --dev to serve the development settings locally")
    workers = workers or int(config["WORKERS"])
    if workers > 1 and str(config["REDIS_URL"]).startswith("memory:"):
        raise CliError(f"REDIS_URL is memory://, which each of the {workers} workers would hold apart "
                       "(a code issued by one is unknown to the others): set IDP_REDIS_URL or use --workers 1")
    if dev:
        click.secho("serving the development settings: never do this in production", fg="yellow", err=True)
    ops.prepare_multiprocess()
    Server({
        "bind": [bind or config["BIND"]],
        "workers": workers,
        "worker_class": "sync",
        "preload_app": False,
        "accesslog": "-" if access_log else None,
        "proc_name": "idp",
        "child_exit": ops.child_exit,
        "on_exit": ops.cleanup_multiprocess,
    }).run()
