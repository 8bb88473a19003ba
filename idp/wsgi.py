"""The WSGI application, for `idp serve` (granian) or any WSGI server: ``idp.wsgi:app``."""

from . import create_app

app = create_app()
