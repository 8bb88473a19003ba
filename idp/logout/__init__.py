"""Logout: OpenID Connect RP-Initiated Logout 1.0, Back-Channel Logout 1.0, and
"sign out everywhere" for an account.

- rp_initiated.py: the rules of an end_session request (pure);
- session_end.py: what ending one browser session does (database, tokens, notifications);
- backchannel.py: logout tokens and their delivery to relying parties, with retries;
- everywhere.py: end every session and token family of an account;
- views.py: the endpoints /logout and /account/sign-out-everywhere.
"""
