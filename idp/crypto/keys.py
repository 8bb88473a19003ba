"""Signing keys for ID tokens, JWT access tokens and logout tokens; the published JWKS.

Each key is one record (idp.crypto.key_storage: a ``<kid>.json`` file in KEYS_DIR, or a row
of the database): its metadata and the private JWK (RFC 7517) sealed with AES-256-GCM under
a key derived from SECRET_KEY (HKDF-SHA256), the kid bound as associated data, so a copy of
the records (a backup, a volume snapshot, a database dump) signs nothing without the secret.
SECRET_KEY already keys the hashes of every client secret and token, so it is the one secret
an operator keeps; a key sealed under another secret, or altered, is never replaced
silently: ``ensure`` refuses to start (``KeysUnreadable``). A file of an earlier release,
with the JWK in clear, is still read; ``seal`` (`idp keys seal`) seals it in place once no
process of that release is left to read the directory (one still running would lose the
key), and the scheduled rotation replaces it anyway. The kid is the RFC 7638 thumbprint, so
a record only ever changes from clear to sealed.

States come from timestamps alone, so nothing has to run when a key switches: per alg, keys
are ordered by (not_before, serial) and a key retires at the not_before of the key after it.

- **next**: published ``publish_ahead`` seconds before it signs, so relying parties that
  cache the JWKS know it before they meet it (OpenID Connect Core §10.1.1);
- **active**: the newest key whose not_before has passed; it signs;
- **retired**: still published, so its tokens verify, until ``prune`` deletes it.

Processes sharing the storage re-read it when its marker changes (looked at no more than
once a second); writers serialise on the storage's lock, so workers starting together
generate once. A storage that cannot be read at that check (the database in an outage)
leaves the copy read before in use.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError, UnsupportedAlgorithmError
from joserfc.jwk import ECKey, RSAKey, import_key
from sqlalchemy.exc import SQLAlchemyError

from ..ops import turns
from .key_storage import DatabaseStorage, DirectoryStorage

log = logging.getLogger("idp.keys")

GENERATORS = {  # RFC 7518 §3.4 (P-256) and §3.3 (RSA, 2048 bits or more)
    "ES256": lambda: ECKey.generate_key("P-256", private=True),
    "RS256": lambda: RSAKey.generate_key(2048, private=True),
}
ALGS = tuple(GENERATORS)
_REASONS = {UnsupportedAlgorithmError: "alg not allowed", BadSignatureError: "bad signature"}
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class InvalidJWT(Exception):
    """A token failed verification: malformed, unknown kid, bad signature or alg not allowed."""


class NoActiveKey(LookupError):
    """No key of this alg may sign yet; ``ensure()`` creates one."""


class KeysUnreadable(RuntimeError):
    """Stored keys that this SECRET_KEY cannot open: never replaced by new keys behind the
    operator's back (relying parties would meet a JWKS without the keys they trust)."""


def sealing_key(secret: str) -> bytes:
    """The key-encryption key: HKDF-SHA256 (RFC 5869) of SECRET_KEY, for this use only."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"idp signing keys at rest v1").derive(str(secret).encode())


def _aad(kid: str) -> bytes:
    return b"idp signing key " + kid.encode()  # a sealed JWK opens only under its own kid


def _seal(kek: bytes, kid: str, private_jwk: dict) -> str:
    nonce = os.urandom(12)
    sealed = nonce + AESGCM(kek).encrypt(nonce, json.dumps(private_jwk).encode(), _aad(kid))
    return base64.urlsafe_b64encode(sealed).decode()


def _unseal(kek: bytes, kid: str, sealed: str) -> dict:
    raw = base64.urlsafe_b64decode(sealed.encode())
    return json.loads(AESGCM(kek).decrypt(raw[:12], raw[12:], _aad(kid)))


@dataclass(frozen=True)
class Key:
    kid: str
    alg: str
    created_at: int
    not_before: int
    serial: int  # breaks ties between keys with the same not_before: the later one wins
    jwk: ECKey | RSAKey = field(repr=False)  # never in logs


class _Sealed(Exception):
    """The record's sealed JWK does not open with this key-encryption key."""


def _stored_form(record: dict) -> str:
    return record["sealed"] if "sealed" in record else json.dumps(record["jwk"], sort_keys=True)


def _open(record: dict | None, kek: bytes, opened: dict) -> tuple[Key | None, str]:
    """(key, how it was stored: "sealed" or "clear"), or (None, why not: "sealed under another
    secret", "unreadable"). Logs by record name only, never key material.

    ``opened``: kid -> (stored form, key) of the keys read before. A record stored exactly as
    before is not opened again: importing an RSA key checks its primes, about 50 ms, which
    every process would otherwise spend, holding the ring's lock, on each change of the keys
    (a rotation, a prune)."""
    try:
        if record is None:
            raise ValueError("unreadable record")
        stored = "sealed" if "sealed" in record else "clear"
        before = opened.get(record["kid"])
        if before is not None and before[0] == _stored_form(record):
            jwk = before[1].jwk
        else:
            try:
                private = _unseal(kek, str(record["kid"]), record["sealed"]) if stored == "sealed" else record["jwk"]
            except (InvalidTag, ValueError) as exc:
                raise _Sealed from exc
            jwk = import_key(private)
        key = Key(record["kid"], record["alg"], int(record["created_at"]), int(record["not_before"]),
                  int(record["serial"]), jwk)
        if key.kid != jwk.thumbprint() or key.alg not in ALGS or not _fits(jwk, key.alg):
            raise ValueError("kid is not the RFC 7638 thumbprint, alg unsupported, or the key not of its alg")
        return key, stored
    except _Sealed:
        return None, "sealed under another secret"
    except Exception:  # noqa: BLE001
        return None, "unreadable"


def _fits(jwk, alg: str) -> bool:
    """Whether the key is one ``alg`` signs with (RFC 7518 §3.4, §3.3): only the kid is sealed
    with the key, so a record relabelled in the storage (an ES256 key as RS256) must read as
    damaged, not fail each signature it is chosen for."""
    if alg == "ES256":
        return isinstance(jwk, ECKey) and jwk.as_dict(private=False).get("crv") == "P-256"
    return isinstance(jwk, RSAKey) and jwk.raw_value.key_size >= 2048


def _kids_of(name: str, record: dict | None) -> list[str]:
    """The kids a record may be of: its name (a directory names its files ``<kid>.json``, a
    database its rows by kid) first, then what its own kid field says, which the damage may
    have changed."""
    kid = record.get("kid") if isinstance(record, dict) else None
    return [name.removesuffix(".json"), *([kid] if isinstance(kid, str) else [])]


def _record(key: Key, kek: bytes) -> dict:
    return {"kid": key.kid, "alg": key.alg, "created_at": key.created_at, "not_before": key.not_before,
            "serial": key.serial, "sealed": _seal(kek, key.kid, key.jwk.as_dict(private=True))}


def _ordered(keys) -> tuple[Key, ...]:
    return tuple(sorted(keys, key=lambda k: (k.alg, k.not_before, k.serial, k.kid)))


class KeyRing:
    def __init__(self, storage: DirectoryStorage | DatabaseStorage | str, publish_ahead: int, secret: str,
                 accept_clear: bool = False):
        """``storage``: idp.crypto.key_storage's, or a directory's path. ``accept_clear``: use
        keys stored in clear (KEYS_ACCEPT_CLEAR: an earlier release wrote them so; `idp keys
        seal`). Without it a record in clear is refused at a start and never used: anyone who
        can write to the storage, SECRET_KEY or not, could otherwise add a key that signs."""
        self.storage = DirectoryStorage(storage) if isinstance(storage, str) else storage
        self.publish_ahead = int(publish_ahead)
        self.accept_clear = accept_clear
        self._kek = sealing_key(secret)
        self._clear: set[str] = set()  # kids of files of an earlier release, JWK in clear
        self._clear_files: list[str] = []  # the same, by record name, when not accepted (so not used)
        self._foreign: list[str] = []  # files sealed under another SECRET_KEY (or altered)
        self._unreadable: list[str] = []  # records that are no key at all (truncated, not JSON)
        self._lock = threading.RLock()
        self._keys: tuple[Key, ...] = ()
        self._jwks: dict | None = None  # built once per load
        self._opened: dict[str, tuple[str, Key]] = {}  # kid -> (stored form, key): see _open
        self._marker = self._checked_at = None
        self._checking = False  # a thread is reading the storage's marker (_snapshot)

    def _snapshot(self, report: bool = True) -> tuple[Key, ...]:
        """The keys, re-read when their storage's marker changed (checked at most once a second).
        ``report``: log each key that does not open (False: the caller refuses, naming them).

        One thread checks at a time; the others go on with the copy meanwhile, and the marker
        is read outside the lock, with the worker's turn handed on (idp.ops.turns): a database
        that stalls would otherwise hold every signature and every JWKS of the process behind
        that one query, a new checker joining it each second."""
        with self._lock:
            now = time.time()
            due = (self._checked_at is None or abs(now - self._checked_at) >= 1) and not self._checking
            if due:
                self._checked_at = now
            keys = self._keys
            if not due and keys:
                return keys
            self._checking = bool(keys)  # without a copy, every caller must wait for a read
        try:
            with turns.waiting():
                marker = self.storage.marker() if keys else None
            with self._lock:
                if not keys or self._marker is None or marker != self._marker:
                    self._load(report)
                return self._keys
        except (OSError, SQLAlchemyError) as exc:
            if not keys:
                raise
            # The database in an outage: go on signing and publishing with the keys read
            # before (a rotation shows once it answers again).
            log.warning("cannot read the signing keys from %s (%s); using the copy read before",
                        self.storage.where, type(exc).__name__)
            return keys
        finally:
            if keys:
                with self._lock:
                    self._checking = False

    def _load(self, report: bool = True) -> None:
        """Read every record; the marker first, so a change made while reading shows at the
        next check. A None marker (storage.marker: not to be trusted yet) reads again then."""
        marker, read, opened = self.storage.marker(), [], {}
        for name, record in self.storage.records():
            key, how = _open(record, self._kek, self._opened)
            before = None if key is not None else next(
                (self._opened[kid] for kid in _kids_of(name, record) if kid in self._opened), None)
            if before is not None:
                # A key read before no longer reads (a damaged restore, an edit): dropped, it
                # would leave the JWKS, and the key it succeeded would sign again. Its copy
                # stays in use; no key is written until the record is repaired (_writing).
                log.error("signing key %s is %s now; using the copy read before", name, how)
                key = before[1]
                opened[key.kid] = before
            elif how == "sealed under another secret" and report:
                log.error("signing key %s does not open with this SECRET_KEY (sealed under another, or altered)", name)
            elif how == "unreadable" and record is not None:
                log.error("ignoring unreadable signing key %s", name)
            elif how == "clear" and not self.accept_clear and report:
                log.error("ignoring signing key %s: stored in clear (`idp keys seal`, KEYS_ACCEPT_CLEAR)", name)
            elif key is not None:
                opened[key.kid] = (_stored_form(record), key)
            read.append((name, key, how))
        self._opened = opened
        self._clear = {k.kid for _, k, how in read if k and how == "clear"}
        self._clear_files = [] if self.accept_clear else [n for n, k, how in read if k and how == "clear"]
        keys = [k for _, k, _ in read if k and (self.accept_clear or k.kid not in self._clear)]
        self._foreign = [n for n, _, how in read if how == "sealed under another secret"]
        self._unreadable = [n for n, _, how in read if how == "unreadable"]
        self._keys, self._jwks, self._checked_at, self._marker = _ordered(keys), None, time.time(), marker

    def _states(self, now: float | None = None) -> list[tuple[Key, str, int | None]]:
        """(key, state, retired_at) for every key on disk."""
        now = time.time() if now is None else now
        keys, out = self._snapshot(), []
        for alg in ALGS:
            group = [k for k in keys if k.alg == alg]
            for key, successor in zip(group, [*group[1:], None]):
                if key.not_before > now:
                    out.append((key, "next", None))
                elif successor is not None and successor.not_before <= now:
                    out.append((key, "retired", successor.not_before))
                else:
                    out.append((key, "active", None))
        return out

    def active(self, alg: str = "ES256") -> Key:
        for key, state, _ in self._states():
            if key.alg == alg and state == "active":
                return key
        raise NoActiveKey(f"no active {alg} signing key in {self.storage.where}")

    def list(self) -> list[dict]:
        """Every key on disk with its state, for the CLI; no key material."""
        return [{"kid": k.kid, "alg": k.alg, "state": state, "created_at": k.created_at,
                 "not_before": k.not_before, "retired_at": retired_at} for k, state, retired_at in self._states()]

    def version(self) -> tuple[str, ...]:
        """Changes whenever the set of keys does (a cache key for the JWKS bytes)."""
        return tuple(k.kid for k in self._snapshot())

    def jwks(self) -> dict:
        """The JWK Set (RFC 7517 §5) of every published key (next, active, retired): public members only."""
        self._snapshot()  # outside the lock (see _snapshot); _load resets _jwks under it
        with self._lock:
            keys = self._keys
            if self._jwks is None:
                self._jwks = {"keys": [
                    {**{m: v for m, v in k.jwk.as_dict(private=False).items() if m not in PRIVATE_MEMBERS},
                     "kid": k.kid, "alg": k.alg, "use": "sig"}
                    for k in keys
                ]}
            return json.loads(json.dumps(self._jwks))  # callers get their own copy

    def sign(self, claims: dict, alg: str = "ES256", typ: str | None = None) -> str:
        """A compact JWS (RFC 7515 §7.1) by the active key of ``alg``; header alg, kid and typ if given."""
        key = self.active(alg)
        header = {"alg": alg, "kid": key.kid, **({"typ": typ} if typ else {})}
        return jwt.encode(header, claims, key.jwk, algorithms=[alg], default_type=None)

    def verify(self, token: str, algs=ALGS, typ: str | None = None) -> dict:
        """The claims of a JWS signed by the published key named by ``kid``, whose header
        ``typ`` is ``typ``: none for an ID token (we sign them without), "at+jwt" for a JWT
        access token. The one key signs all three kinds, so without this an access token or
        a logout token would pass for an ID token hint (explicit typing, RFC 8725 §3.11).

        Checks signature, kid, alg and typ only (joserfc checks no claim): exp, iss, aud are
        the caller's."""
        keys, allowed = {k.kid: k for k in self._snapshot()}, [a for a in algs if a in ALGS]
        if not allowed:  # joserfc reads an empty list as "its recommended algs"
            raise InvalidJWT("no allowed alg")

        def resolve(obj):
            header = obj.headers()
            key = keys.get(header.get("kid"))
            if key is None:
                raise InvalidJWT("unknown kid")
            if key.alg != header.get("alg"):
                raise InvalidJWT("alg does not match the key")
            if header.get("typ") != typ:
                raise InvalidJWT("not the expected kind of token (typ)")
            return key.jwk

        try:
            return dict(jwt.decode(token, resolve, algorithms=allowed).claims)
        except InvalidJWT:
            raise
        except (JoseError, ValueError, TypeError, AttributeError, RecursionError) as exc:
            raise InvalidJWT(_REASONS.get(type(exc), f"invalid JWS: {type(exc).__name__}")) from exc

    @contextmanager
    def _writing(self):
        """Hold the storage's lock (every process's), then this ring's; re-read before, and
        after the writes are committed (or undone).

        The storage's lock comes first: on SQLite it is the database's write lock, which a
        token request may hold while it waits for this ring's lock to sign an ID token."""
        try:
            with self.storage.locked(), self._lock:
                self._load()
                # Never write beside keys this SECRET_KEY cannot open: a key sealed under
                # the wrong secret (an operator's shell without IDP_SECRET_KEY running
                # `idp keys rotate`) would be one no server can sign with. Nor beside records
                # that read as no key: one may be the key that signs now.
                self._refuse_foreign()
                self.refuse_damaged()
                committed = self._keys
                try:
                    yield
                finally:
                    # The keys written here count once the storage has committed them: this
                    # ring's lock is let go first, and another thread signing meanwhile must
                    # not use a key a failed commit would leave unpublished (the read below).
                    self._keys = committed
        finally:
            with self._lock:
                self._load()

    def _create(self, alg: str, not_before: int) -> dict:
        jwk = GENERATORS[alg]()
        serial = max((k.serial for k in self._keys), default=0) + 1
        key = Key(jwk.thumbprint(), alg, int(time.time()), not_before, serial, jwk)
        self.storage.write(_record(key, self._kek))
        self._keys = _ordered([*self._keys, key])
        log.info("created %s signing key kid=%s not_before=%s", alg, key.kid, not_before)
        return {"kid": key.kid, "alg": alg, "created_at": key.created_at, "not_before": not_before}

    def _signing_algs(self) -> set[str]:
        return {k.alg for k, state, _ in self._states() if state == "active"}

    def refuse_unreadable(self) -> None:
        """Raise KeysUnreadable if the storage holds keys this SECRET_KEY cannot open (its
        message names them: no log line per key besides)."""
        self._snapshot(report=False)
        self._refuse_foreign()
        if self._clear_files:
            raise KeysUnreadable(
                f"{len(self._clear_files)} signing key(s) in {self.storage.where} are stored in clear "
                f"({', '.join(self._clear_files)}): an earlier release wrote them so, or someone who can write "
                "there without knowing SECRET_KEY did; seal them with `idp keys seal` (or move them away), "
                "or set KEYS_ACCEPT_CLEAR=true while processes of that release still run")

    def _refuse_foreign(self) -> None:
        if self._foreign:
            raise KeysUnreadable(
                f"{len(self._foreign)} signing key(s) in {self.storage.where} do not open with this "
                f"SECRET_KEY ({', '.join(self._foreign)}): set the SECRET_KEY they were sealed with, "
                "or move them away to start with new keys")

    def refuse_damaged(self) -> None:
        if self._unreadable:
            raise KeysUnreadable(
                f"{len(self._unreadable)} record(s) in {self.storage.where} are no signing key this release can "
                f"read ({', '.join(self._unreadable)}): one may be the key that signs now, and a new key would "
                "replace it in the JWKS; repair them or move them away")

    def ensure(self) -> list[dict]:
        """Give each alg a key that signs now where none does; no lock, no write when all do.
        Refuses (KeysUnreadable) while the storage holds keys this SECRET_KEY cannot open, or
        records that read as no key: at a start, a damaged record of the key that signed
        would otherwise leave the key before it signing, or a new one signing at once,
        unpublished to relying parties' cached JWKS."""
        self.refuse_unreadable()
        self.refuse_damaged()
        if self._signing_algs() >= set(ALGS):
            return []
        with self._writing():
            signing = self._signing_algs()
            return [self._create(alg, int(time.time())) for alg in ALGS if alg not in signing]

    def seal(self) -> list[str]:
        """Seal in place the keys an earlier release stored in clear; return their kids."""
        with self._writing():
            sealed = [k for k in self._keys if k.kid in self._clear]
            for key in sealed:
                self.storage.write(_record(key, self._kek))
                log.info("sealed %s signing key kid=%s (stored in clear by an earlier release)", key.alg, key.kid)
        return [k.kid for k in sealed]

    def import_from(self, source: KeyRing) -> list[str]:
        """Write here, sealed, every key of ``source`` this storage lacks; return their kids.

        For the move from KEYS_DIR to the database (`idp keys import`): the keys keep their
        kid, times and serial, hence their states, so relying parties see the same JWKS and
        the same key signing. Refuses (KeysUnreadable) while ``source`` holds keys this
        SECRET_KEY cannot open, or records that are no key at all: they would be left behind,
        and relying parties would miss a kid they may still hold."""
        source.refuse_unreadable()
        if source._unreadable:
            raise KeysUnreadable(
                f"{len(source._unreadable)} record(s) in {source.storage.where} are no signing key this release "
                f"can read ({', '.join(source._unreadable)}): repair or remove them, then import again")
        with self._writing():
            have = {k.kid for k in self._keys}
            added = [k for k in source._keys if k.kid not in have]
            for key in added:
                self.storage.write(_record(key, self._kek))
                log.info("imported %s signing key kid=%s", key.alg, key.kid)
        return [k.kid for k in added]

    def rotate(self, alg: str = "ES256", immediate: bool = False) -> dict:
        """A new key, published now, signing from now + publish_ahead (now if immediate);
        the key it supersedes retires at that moment by the ordering rule."""
        if alg not in ALGS:
            raise ValueError(f"unsupported signing alg {alg!r} (expected one of {ALGS})")
        with self._writing():
            return self._create(alg, int(time.time()) + (0 if immediate else self.publish_ahead))

    def withdraw(self, kid: str) -> dict:
        """Delete a key at once, whatever its age: for a leaked one (after `rotate --now` made
        another sign). Every token it signed stops verifying. The key that signs now is
        refused: withdrawn, its algorithm would have none."""
        with self._writing():
            for key, state, _ in self._states():
                if key.kid != kid:
                    continue
                if state == "active":
                    raise ValueError(f"{kid} is the {key.alg} key that signs now: rotate with --now first")
                self.storage.delete(kid)
                log.warning("withdrew %s %s key kid=%s", state, key.alg, kid)
                return {"kid": kid, "alg": key.alg, "state": state}
        raise KeyError(kid)

    def rotate_aged(self, max_age: int) -> list[dict]:
        """Rotate each alg whose newest key (active or next) is ``max_age`` seconds old or more:
        the scheduled rotation (idp.ops.maintenance). Judged again under the lock, so processes
        sharing the directory rotate once."""

        def aged(now: float) -> list[str]:
            newest = {k.alg: k for k in self._snapshot()}  # ordered: the last of each alg wins
            return [alg for alg, key in newest.items() if key.created_at + max_age <= now]

        if not aged(time.time()):
            return []
        with self._writing():
            now = time.time()
            return [self._create(alg, int(now) + self.publish_ahead) for alg in aged(now)]

    def prune(self, max_token_lifetime: int, live_since=None) -> list[str]:
        """Delete retired keys older than any unexpired token they signed; return their kids.

        ``live_since``: when the oldest live browser session began (None: none is live), or a
        function returning it, asked only when some key is otherwise due. A key that retired
        after that may have signed an ID token some relying party of the session still holds
        as its id_token_hint, and a session renewed by a new sign-in keeps its sid past any
        fixed retention: such a key is kept while the session lives."""

        def aged(now: float) -> list[tuple[Key, int]]:
            return [(key, retired_at) for key, state, retired_at in self._states(now)
                    if state == "retired" and retired_at + max_token_lifetime <= now]

        if not aged(time.time()):
            return []  # no lock, no write: every process would read the keys again after one
        since = live_since() if callable(live_since) else live_since
        now, removed = time.time(), []
        with self._writing():
            for key, retired_at in aged(now):
                if since is None or retired_at <= since:
                    self.storage.delete(key.kid)
                    removed.append(key.kid)
                    log.info("pruned retired %s key kid=%s", key.alg, key.kid)
        return removed


def max_token_lifetime(config: dict) -> int:
    """How long a retired key is kept (and published): as long as a token it signed may be
    checked against it. ID and JWT access tokens until they expire, a logout token for its
    TOKEN_TTL, and an ID token after it expires too: as the id_token_hint of a logout or of
    a prompt=none request, while the session it came from may last (RP-Initiated Logout 1.0
    §2: the OP SHOULD accept an expired ID token as a hint). Were the key pruned an hour
    after a rotation, every relying party signed in before it would lose its hints. A session
    renewed past that is covered by ``KeyRing.prune``'s ``live_since``."""
    from ..logout.backchannel import TOKEN_TTL as LOGOUT_TOKEN_TTL

    return max(config["ID_TOKEN_TTL"], config["ACCESS_TOKEN_TTL"], config["SESSION_TTL"], LOGOUT_TOKEN_TTL)
