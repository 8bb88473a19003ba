"""``current_app`` and ``g`` for the token hot paths, without werkzeug's LocalProxy.

Flask's ``current_app`` and ``g`` resolve every attribute through werkzeug's generic
LocalProxy (a descriptor, a context-variable lookup and a getattr, all in Python): measured
here, 0.75 us per ``current_app.config`` against 0.12 us for the same object taken from the
context variable Flask itself keeps (``flask.globals._cv_app``), and 0.80 against 0.18 us per
``g.get``. A client_credentials request made about fifteen such lookups; these two objects
took 5-10% off its CPU in-process (bench/, README "Benchmark").

Drop-in for what werkzeug's proxies offer that this code uses: attributes of either, ``in``
and iteration over ``g``, truth (false outside a context) and ``_get_current_object()``:
``from ..context import current_app, g``. Anything else (a comparison, arithmetic) is not
proxied. Outside an application context they raise RuntimeError, as Flask's do. Flask's own objects are used unchanged
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

        def _get_current_object(self):
            return _app_context().app

        def __bool__(self):  # as werkzeug's proxy: false outside a context, not an error
            return _cv_app.get(None) is not None

        def __repr__(self):
            ctx = _cv_app.get(None)
            return f"<current_app {ctx.app!r}>" if ctx is not None else "<current_app unbound>"

    class _Globals:
        """The current application context's ``g`` (flask.g)."""

        __slots__ = ()

        def __getattr__(self, name):
            return getattr(_app_context().g, name)

        def __contains__(self, name):
            return name in _app_context().g

        def __iter__(self):
            return iter(_app_context().g)

        def __bool__(self):
            return _cv_app.get(None) is not None

        def _get_current_object(self):
            return _app_context().g

        def __setattr__(self, name, value):
            setattr(_app_context().g, name, value)

        def __delattr__(self, name):
            delattr(_app_context().g, name)

    current_app, g = _CurrentApp(), _Globals()
