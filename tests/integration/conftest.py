"""Fixtures of the token suites: a resource server client and a signed-in token set."""

import pytest

from tests.integration.logout_helpers import receiver  # noqa: F401  (a relying party's back-channel endpoint)
from tests.integration.token_helpers import backend, login


@pytest.fixture
def api(app):
    """The backend API client: confidential, client_credentials, introspects tokens."""
    return backend()


@pytest.fixture
def issued(flow):
    """The token response of a password sign-in through the code flow."""
    return login(flow)
