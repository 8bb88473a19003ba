"""Registered relying parties, with the methods authlib's ClientMixin expects."""

from sqlalchemy import JSON, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..crypto.secrets import verify_keyed_hash
from ..extensions import db
from ..oauth import redirect_uri
from ._types import JSONList, UTCDateTime, utcnow

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")


class ClientRules:
    """What a client may do, from its registration's attributes; shared by the database row
    (Client) and the copy rebuilt from the store's cache (CachedClient)."""

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    @property
    def is_native(self) -> bool:
        return self.application_type == "native"

    # -- authlib ClientMixin -------------------------------------------------
    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        # Never guess: a request must name its redirect_uri unless exactly one is registered.
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope):
        if not scope:
            return ""
        allowed = set(self.scopes)
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, uri):
        return redirect_uri.matches(uri, self.redirect_uris, self.is_native)

    def still_allows(self, scope, named_redirect_uri: str | None) -> bool:
        """Whether the registration as it is now still allows ``scope`` and the redirect URI a
        request named (None: it named none), for a sign-in or a code that began under an
        older one: an operator who drops a redirect URI (a compromised callback host) or a
        scope must stop codes, errors and tokens going there or carrying it at once (RFC 6749
        §10.6, RFC 9700 §4.1.3: exact registered URIs)."""
        uri_ok = named_redirect_uri is None or self.check_redirect_uri(named_redirect_uri)
        return uri_ok and set(scope) <= set(self.scopes)

    def check_client_secret(self, client_secret):
        return self.secret_hash is not None and verify_keyed_hash(client_secret, self.secret_hash)

    def check_endpoint_auth_method(self, method, endpoint):
        return method == self.token_endpoint_auth_method

    def check_grant_type(self, grant_type):
        return grant_type in self.grant_types

    def check_response_type(self, response_type):
        return response_type == "code" and "authorization_code" in self.grant_types


class Client(ClientRules, db.Model):
    __tablename__ = "client"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100), unique=True)
    # Keyed hash of the secret (see idp.crypto.secrets); null for public and private_key_jwt clients.
    secret_hash: Mapped[str | None] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(200))
    application_type: Mapped[str] = mapped_column(String(10), default="web")  # web | native
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(40), default="client_secret_basic")
    redirect_uris: Mapped[list] = mapped_column(JSONList, default=list)
    post_logout_redirect_uris: Mapped[list] = mapped_column(JSONList, default=list)
    grant_types: Mapped[list] = mapped_column(JSONList, default=lambda: ["authorization_code"])
    scopes: Mapped[list] = mapped_column(JSONList, default=lambda: ["openid", "email", "profile"])
    first_party: Mapped[bool] = mapped_column(Boolean, default=False)
    id_token_signed_response_alg: Mapped[str | None] = mapped_column(String(10))
    access_token_format: Mapped[str] = mapped_column(String(10), default="opaque")  # opaque | jwt
    jwks: Mapped[dict | None] = mapped_column(JSON)  # public keys for private_key_jwt
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(500))
    created_at = mapped_column(UTCDateTime, default=utcnow)
    # Raised by the ORM at every UPDATE (SQLAlchemy's version counter), so a statement can
    # check that a cached copy of the registration is the current one (idp.oauth.clients).
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")

    __mapper_args__ = {"version_id_col": version}


class CachedClient(ClientRules):
    """A registration read from the shared cache (idp.oauth.clients): plain attributes, no ORM
    state to build on the token hot path. Read-only by convention: change clients in the database."""

    def __init__(self, data: dict):
        self.__dict__.update(data)
