"""The session id's one rule (docs/edge-token.md): 16 to 32 characters of the base64url alphabet. The token's
prefix, its ``sid`` claim, the issuer's requests, the ledger's keys and the ``r:<session id>`` store keys all
follow it."""

from __future__ import annotations

import re

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{16,32}\Z")


def is_session_id(value: object) -> bool:
    return isinstance(value, str) and SESSION_ID.match(value) is not None
