"""``python -m clients.mobile``: sign in through the system browser, then refresh once."""

import json
import webbrowser

from ..common import issuer
from .app import NativeApp


def open_system_browser(url: str) -> None:
    print(f"Opening the system browser at:\n  {url}\n(open it yourself if nothing happens)")
    webbrowser.open(url)


def main() -> None:
    app = NativeApp(issuer())
    claims = app.sign_in(open_system_browser)
    print("ID token claims:", json.dumps(claims, indent=2, sort_keys=True))
    print("UserInfo:", json.dumps(app.userinfo(), indent=2, sort_keys=True))
    old = app.tokens["refresh_token"]
    app.refresh()
    print(f"refreshed: refresh token {'rotated' if app.tokens['refresh_token'] != old else 'not rotated'}")


if __name__ == "__main__":
    main()
