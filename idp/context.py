"""``current_app`` and ``g`` for the token hot paths, without werkzeug's LocalProxy.

Flask's ``current_app`` and ``g`` resolve every attribute through werkzeug's generic
LocalProxy (a descriptor, a context-variable lookup and a getattr, all in Python): measured
here, 0.75 us per ``current_app.config`` against 0.12 us for the same object taken from the
context variable Flask itself keeps (``flask.globals._cv_app``), and 0.80 against 0.18 us per
``g.get``. A client_credentials request made about fifteen such lookups; these two objects
took 5-10% off its CPU in-process (bench/, README "Benchmark").

Drop-in where a module only reads attributes of ``current_app`` and gets, sets or pops
attributes of ``g``: ``from ..context import current_app, g``. Outside an application
context they raise RuntimeError, as Flask's do. Flask's own objects are used unchanged
should a release of Flask no longer have the context variable.
"""

from __future__ import annotations

try:
    from flask.globals import _cv_app
except ImportError:  # pragma: no cover  (a Flask without it: its own proxies, only slower)
    from flask import current_app, g  # noqa: F401
else:
    _OUTSIDE = "Working outside of application context."

    def _app_context():
        try:
            return _cv_app.get()
        except LookupError:
            raise RuntimeError(_OUTSIDE) from None

    class _CurrentApp:
        """The application of the current application context (flask.current_app)."""

        __slots__ = ()

        def __getattr__(self, name):
            return getattr(_app_context().app, name)

    class _Globals:
        """The current application context's ``g`` (flask.g)."""

        __slots__ = ()

        def __getattr__(self, name):
            return getattr(_app_context().g, name)

        def __setattr__(self, name, value):
            setattr(_app_context().g, name, value)

        def __delattr__(self, name):
            delattr(_app_context().g, name)

    current_app, g = _CurrentApp(), _Globals()
