"""Prepare our IdP for the benchmark: schema, the shared bench clients, the bench account.

Run as ``python bench/ours_setup.py CLIENTS_JSON EMAIL`` with the IDP_* environment of
the server under test; the password comes from BENCH_PASSWORD (never from argv).
"""

import json
import os
import sys

from flask_migrate import upgrade

from idp import create_app
from idp.crypto.secrets import keyed_hash
from idp.extensions import db
from idp.login.password import hash_password
from idp.models import Account, Client


def main(clients_file: str, email: str) -> None:
    app = create_app()
    with app.app_context():
        upgrade()
        for c in json.load(open(clients_file)):
            db.session.add(Client(
                client_id=c["client_id"], name=c["client_id"], secret_hash=keyed_hash(c["client_secret"]),
                token_endpoint_auth_method=c["token_endpoint_auth_method"], redirect_uris=c["redirect_uris"],
                grant_types=c["grant_types"], scopes=c["scope"].split(), first_party=True,
                # as bench/reference/server.mjs registers them (clientDefaults): both sign ES256
                id_token_signed_response_alg="ES256",
            ))
        password_hash = hash_password(os.environ["BENCH_PASSWORD"])
        db.session.add(Account(email=email, email_verified=True, password_hash=password_hash))
        db.session.commit()


if __name__ == "__main__":
    main(*sys.argv[1:3])
