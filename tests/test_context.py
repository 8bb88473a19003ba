"""idp.context: Flask's current_app and g without werkzeug's proxy, same objects, same refusal outside a context."""

import flask
import pytest

from idp.context import current_app, g


def test_current_app_and_g_are_flasks_own_in_an_application_context(app):
    with app.app_context():
        assert current_app.config is flask.current_app.config
        assert current_app.extensions is app.extensions
        g.idp_probe = 1
        assert flask.g.idp_probe == 1 and g.get("idp_probe") == 1
        assert g.setdefault("idp_set", []) is flask.g.idp_set
        assert "idp_probe" in g and sorted(g) == sorted(flask.g) and g and current_app
        assert current_app._get_current_object() is app and g._get_current_object() is flask.g._get_current_object()
        assert g.pop("idp_probe") == 1 and "idp_probe" not in flask.g and "idp_probe" not in g
        del g.idp_set
        assert "idp_set" not in flask.g
    with app.app_context():  # a new context: a new g
        assert g.get("idp_probe") is None


def test_outside_an_application_context_they_refuse_as_flask_does():
    assert not current_app and not g and bool(current_app) == bool(flask.current_app)
    with pytest.raises(RuntimeError, match="application context"):
        current_app.config
    with pytest.raises(RuntimeError, match="application context"):
        g.get("x")
    with pytest.raises(RuntimeError, match="application context"):
        g.x = 1
