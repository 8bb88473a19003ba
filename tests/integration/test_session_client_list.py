"""The session's list of clients (whom back-channel logout tells, OIDC Back-Channel Logout
1.0 §2.3): every client answered with a code in the session is on it, whichever way the
sign-in went. A new session is written with the client already listed (one INSERT); a
renewed one, and one a consent finishes later, append under the row's lock."""

from idp.extensions import db
from idp.models import BrowserSession
from tests.conftest import Flow, csrf_token, register_client


def _clients() -> dict[str, list]:
    db.session.expire_all()
    return {row.sid: sorted(row.clients) for row in db.session.execute(db.select(BrowserSession)).scalars()}


def test_a_fresh_sign_in_lists_its_client(flow):
    assert flow.redeem(flow.login_code()).status_code == 200
    assert list(_clients().values()) == [["rp-web"]]


def test_single_sign_on_to_another_client_adds_it(client, flow):
    flow.login_code()
    other = Flow(client, register_client("rp-other"))
    assert "/signin/" not in other.authorize().headers["Location"]  # no sign-in page: the session
    other.login_code()
    assert list(_clients().values()) == [["rp-other", "rp-web"]]


def test_a_renewed_session_keeps_its_list_and_adds_the_client(client, flow):
    flow.login_code()
    (sid,) = _clients()
    Flow(client, register_client("rp-other")).login_code(prompt="login")  # proves it again: renewed
    assert _clients() == {sid: ["rp-other", "rp-web"]}


def test_a_client_that_asks_consent_is_listed_once_the_seller_allows(client, seller, third_party_rp):
    third = Flow(client, third_party_rp)
    consent_url = third.sign_in(third.authorize()).headers["Location"]
    assert "/consent" in consent_url
    assert list(_clients().values()) == [[]]  # signed in; no code for anyone yet
    page = client.get(consent_url).get_data(as_text=True)
    resp = client.post(consent_url, data={"csrf_token": csrf_token(page), "allow": "Allow"})
    assert "code=" in resp.headers["Location"]
    assert list(_clients().values()) == [["rp-third"]]

