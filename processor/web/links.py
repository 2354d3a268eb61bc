"""Signed links: the hold-review link in a hold email, the one-time sign-in link, and CSRF values.

Every token is an itsdangerous signature (HMAC-SHA256 keyed by the web secret) over what it grants:
a hold link names one tenant, one run and the one address it was sent to; a sign-in link names a
tenant, an address and a random nonce (spent on use). Each kind has its own salt, so a token of one
kind is never accepted as another. Tokens are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from processor.context import Context

SECRET_FILE = "web-secret"
SIGNIN_SECONDS = 30 * 60  # a sign-in link is for signing in now, not next week
HOLD_SALT = "rosterdrop.hold-link.v1"
SIGNIN_SALT = "rosterdrop.signin.v1"


class BadLink(Exception):
    """A token that is tampered, expired, of another kind or malformed: the page answers 403."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def web_secret(ctx: Context) -> bytes:
    """The signing key: from the environment variable [web] secret_env, else a random key kept in the home."""
    name = ctx.config.web.secret_env
    value = os.environ.get(name) if name else None
    if value:
        return value.encode("utf-8")
    path = ctx.home / SECRET_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(48).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    return key


@dataclass(frozen=True)
class HoldLink:
    tenant: str
    run_id: str
    address: str


class Signer:
    """Makes and checks the console's tokens with one secret."""

    def __init__(self, secret: bytes, link_days: float) -> None:
        self.secret = secret
        self.link_seconds = int(link_days * 86400)
        self._hold = URLSafeTimedSerializer(secret, salt=HOLD_SALT)
        self._signin = URLSafeTimedSerializer(secret, salt=SIGNIN_SALT)

    @classmethod
    def of(cls, ctx: Context) -> Signer:
        return cls(web_secret(ctx), ctx.config.web.link_days)

    # -------------------------------------------------------- hold links

    def hold_token(self, tenant: str, run_id: str, address: str) -> str:
        return self._hold.dumps({"t": tenant, "r": run_id, "a": address})

    def check_hold(self, token: str, max_age: float | None = None) -> HoldLink:
        data = self._load(self._hold, token, self.link_seconds if max_age is None else max_age)
        if not (isinstance(data, dict) and all(isinstance(data.get(k), str) for k in "tra")):
            raise BadLink("malformed")
        return HoldLink(data["t"], data["r"], data["a"])

    # -------------------------------------------------------- sign-in links

    def signin_token(self, tenant: str, address: str) -> str:
        return self._signin.dumps({"t": tenant, "a": address, "n": secrets.token_hex(16)})

    def check_signin(self, token: str, max_age: float = SIGNIN_SECONDS) -> tuple[str, str, str]:
        """(tenant, address, nonce) of a valid sign-in token; BadLink otherwise."""
        data = self._load(self._signin, token, max_age)
        if not (isinstance(data, dict) and all(isinstance(data.get(k), str) for k in "tan")):
            raise BadLink("malformed")
        return data["t"], data["a"], data["n"]

    # -------------------------------------------------------- CSRF

    def csrf_for(self, value: str) -> str:
        """A CSRF value bound to a link token or a session: only a page that holds it can post."""
        return hmac.new(self.secret, b"csrf:" + value.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, value: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf_for(value), str(given))

    @staticmethod
    def _load(serializer: URLSafeTimedSerializer, token: str, max_age: float):
        if not token or len(token) > 2000:
            raise BadLink("malformed")
        try:
            return serializer.loads(token, max_age=max_age)
        except SignatureExpired:
            raise BadLink("expired") from None
        except BadSignature:
            raise BadLink("bad signature") from None
        except Exception:  # noqa: BLE001 - any undecodable token is just a bad link
            raise BadLink("malformed") from None


def hold_url(ctx: Context, tenant: str, run_id: str, address: str, signer: Signer | None = None) -> str:
    """The review link for one recipient of a hold email."""
    signer = signer or Signer.of(ctx)
    return f"{ctx.config.web.base_url}/hold/{signer.hold_token(tenant, run_id, address)}"


def run_url(ctx: Context, tenant: str, run_id: str) -> str:
    """The run's page in the console (a signed-in page)."""
    return f"{ctx.config.web.base_url}/t/{tenant}/runs/{run_id}"


def secret_path(home: Path) -> Path:
    return home / SECRET_FILE
