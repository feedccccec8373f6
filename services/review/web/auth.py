"""Reviewer sign-in: accounts from settings with argon2 password hashes, server-side sessions
that end ``session_ttl_s`` after sign-in, and a CSRF token per session that every form
carries (and the sign-in form a token of its own, double-submitted in a cookie).

Sessions live in the process: a restart signs everyone out (nothing else is lost), and the
Deployment runs one replica. Behind an SSO / OIDC proxy set ``trusted_user_header``
(docs/security.md).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

SESSION_COOKIE = "alive_review_session"
LOGIN_CSRF_COOKIE = "alive_review_login_csrf"
_hasher = PasswordHasher()
# Verified when the account is unknown, so that a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@dataclass(frozen=True)
class Session:
    reviewer: str
    csrf: str
    expires_at_ms: int


class Accounts:
    def __init__(self, hashes: dict[str, str]) -> None:
        self._hashes = dict(hashes)

    def check(self, name: str, password: str) -> bool:
        stored = self._hashes.get(name)
        try:
            return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False


class Sessions:
    def __init__(self, ttl_s: int) -> None:
        self._ttl_ms = ttl_s * 1000
        self._sessions: dict[str, Session] = {}

    def open(self, reviewer: str, now_ms: int) -> tuple[str, Session]:
        self._expire(now_ms)
        sid = secrets.token_urlsafe(32)
        session = Session(reviewer, secrets.token_urlsafe(32), now_ms + self._ttl_ms)
        self._sessions[sid] = session
        return sid, session

    def get(self, sid: str | None, now_ms: int) -> Session | None:
        session = self._sessions.get(sid or "")
        if session is None or session.expires_at_ms <= now_ms:
            self._sessions.pop(sid or "", None)
            return None
        return session

    def close(self, sid: str | None) -> None:
        self._sessions.pop(sid or "", None)

    def _expire(self, now_ms: int) -> None:
        for sid in [s for s, v in self._sessions.items() if v.expires_at_ms <= now_ms]:
            del self._sessions[sid]


def same_token(expected: str, given: str | None) -> bool:
    return bool(expected) and given is not None and hmac.compare_digest(expected, given)
