"""No cookie session on the machine-to-machine endpoints.

/token, /introspect, /revoke and /userinfo are called by servers and apps with client
credentials or bearer tokens, never with our browser cookies, and they use no session.
Flask opens its signed-cookie session on every request all the same (building a signer
each time); on these paths a null session skips that work, and any attempt to write to
it fails loudly instead of setting a cookie.
"""

from flask.sessions import SecureCookieSessionInterface

API_PATHS = frozenset({"/token", "/introspect", "/revoke", "/userinfo"})


class SessionInterface(SecureCookieSessionInterface):
    def open_session(self, app, request):
        if request.path in API_PATHS:
            return self.make_null_session(app)
        return super().open_session(app, request)


def register(app) -> None:
    app.session_interface = SessionInterface()
