"""Signed, scoped tokens for the links in every message (unsubscribe, manage, see all).

A token names exactly what it may touch (a recipient, and for unsubscribe the subscriptions
of that message), is signed with the secret key, and is scoped by a salt per purpose, so a
manage token cannot be replayed as an unsubscribe token and a forged token is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

from digestbot.errors import DigestbotError


class BadToken(DigestbotError, ValueError):
    """A token that was tampered with, forged, or made for another purpose."""


# A vote token: recipient id, paper id, u(p) or d(own), and 128 bits of HMAC-SHA256 over them.
_VOTE = re.compile(r"([0-9]{1,18})\.([0-9]{1,18})\.([ud])\.([A-Za-z0-9_-]{22})")
_VOTES = {"u": "up", "d": "down"}

# Purposes whose tokens expire: a confirmation link is good for a week. The links in digests
# (manage, unsubscribe, see all) must keep working in old emails, so they carry no time.
TIMED = {"confirm": 7 * 24 * 3600}


class LinkSigner:
    def __init__(self, secret_key: str, base_url: str) -> None:
        if not secret_key:
            raise ValueError("a signing key is required")
        self._key = secret_key
        self._serializers: dict[str, URLSafeSerializer] = {}
        # Votes get a plain HMAC, not a serializer's JSON, zlib and base64: a digest carries two a
        # paper, and signing them that way cost a third of a digest pass (issue 14's 500 digests/s).
        self._vote_mac = hmac.new(self.derived_key("vote").encode(), digestmod=hashlib.sha256)
        self.base_url = base_url.rstrip("/")

    def derived_key(self, purpose: str) -> str:
        """A key of its own for another use (the web session's cookie): neither can stand in for the other."""
        return hashlib.sha256(f"digestbot-{purpose}:{self._key}".encode()).hexdigest()

    def _serializer(self, purpose: str) -> URLSafeSerializer:
        made = self._serializers.get(purpose)  # made once: a digest pass signs four links a digest
        if made is None:
            kind = URLSafeTimedSerializer if purpose in TIMED else URLSafeSerializer
            made = self._serializers[purpose] = kind(self._key, salt=f"digestbot-{purpose}")
        return made

    def token(self, purpose: str, payload: dict) -> str:
        return self._serializer(purpose).dumps(payload)

    def load(self, purpose: str, token: str) -> dict:
        options = {"max_age": TIMED[purpose]} if purpose in TIMED else {}
        try:
            payload = self._serializer(purpose).loads(token, **options)
        except SignatureExpired:
            raise BadToken("this link has expired: ask for a new one") from None
        except BadSignature:
            raise BadToken("this link is not valid (it may have been altered)") from None
        if not isinstance(payload, dict):
            raise BadToken("this link is not valid")
        return payload

    def manage_url(self, recipient_id: int) -> str:
        return f"{self.base_url}/manage/{self.token('manage', {'r': recipient_id})}"

    def unsubscribe_url(self, recipient_id: int, subscription_ids: list[int]) -> str:
        payload = {"r": recipient_id, "s": sorted(subscription_ids)}
        return f"{self.base_url}/unsubscribe/{self.token('unsubscribe', payload)}"

    def confirm_url(self, recipient_id: int, subscription_ids: list[int]) -> str:
        payload = {"r": recipient_id, "s": sorted(subscription_ids)}
        return f"{self.base_url}/confirm/{self.token('confirm', payload)}"

    def vote_url(self, recipient_id: int, paper_id: int, action: str) -> str:
        """A feedback link of a digest (issue 13): "more like this" (up) or "less like this" (down)."""
        return f"{self.base_url}/feedback/{self.vote_token(recipient_id, paper_id, action)}"

    def vote_token(self, recipient_id: int, paper_id: int, action: str) -> str:
        body = f"{recipient_id}.{paper_id}.{action[0]}"
        return f"{body}.{self._vote_signature(body)}"

    def _vote_signature(self, body: str) -> str:
        mac = self._vote_mac.copy()
        mac.update(body.encode())
        return base64.urlsafe_b64encode(mac.digest()[:16]).decode().rstrip("=")

    def load_vote(self, token: str) -> tuple[int, int, str]:
        """(recipient id, paper id, up|down) of a vote token; BadToken if it is not one."""
        found = _VOTE.fullmatch(token)
        if found is None or not hmac.compare_digest(found[4], self._vote_signature(token.rpartition(".")[0])):
            raise BadToken("this link is not valid (it may have been altered)")
        return int(found[1]), int(found[2]), _VOTES[found[3]]

    def digest_url(self, recipient_id: int, digest_key: str) -> str:
        return f"{self.base_url}/digests/{self.token('digest', {'r': recipient_id, 'd': digest_key})}"
