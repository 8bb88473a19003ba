"""The durable model: accounts, clients, consents, browser sessions, token families.

Short-lived state (codes, access tokens, sign-ins in progress) is not here: it lives in
the ephemeral store (idp.store) with a TTL.
"""

from .account import Account
from .client import Client
from .consent import Consent
from .delivery import BackchannelDelivery
from .grant import Grant, RefreshToken
from .session import BrowserSession
from .event import SecurityEvent
from .signing_key import SigningKey, SigningKeyState
from .sweep import PendingSweep

__all__ = ["Account", "Client", "Consent", "Grant", "RefreshToken", "BrowserSession", "SecurityEvent",
           "SigningKey", "SigningKeyState", "BackchannelDelivery", "PendingSweep"]
