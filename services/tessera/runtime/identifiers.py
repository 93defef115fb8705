"""The one rule for resource identifiers every service takes from clients (rooms, conferences, ...).

An id becomes a NATS subject token and a JetStream key-value key, so it is checked at the edge, before any storage
sees it: lower-case ASCII letters, digits and '-', starting with a letter or digit, at most 64 characters.
Display names are free text for people, so any language, but bounded and without control characters.
"""

from __future__ import annotations

import re
import unicodedata

from tessera.runtime.echo import shown
from tessera.runtime.errors import InvalidArgument

ID_RULE = "[a-z0-9][a-z0-9-]{0,63}"
DISPLAY_NAME_CHARS = 200
_NOT_TEXT = {"Cc", "Cs", "Cn"}  # control, surrogate, unassigned; format characters (emoji joiners) are text
_ID = re.compile(ID_RULE)


def is_valid_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None  # fullmatch: "$" would let a trailing newline through


def check_id(value: str, field: str) -> str:
    """``value`` when it is a valid id; else INVALID_ARGUMENT naming ``field`` (empty: "must not be empty")."""
    if not value:
        raise InvalidArgument("must not be empty", field=field)
    if not is_valid_id(value):
        raise InvalidArgument(f"{shown(value)} is not an id: must match {ID_RULE}", field=field)
    return value


def check_display_name(value: str, field: str) -> str:
    """``value`` when it is a fit display name (empty allowed); else INVALID_ARGUMENT naming ``field``."""
    if len(value) > DISPLAY_NAME_CHARS:
        raise InvalidArgument(f"is {len(value)} characters long: at most {DISPLAY_NAME_CHARS}", field=field)
    if any(unicodedata.category(ch) in _NOT_TEXT for ch in value):
        raise InvalidArgument(f"{shown(value)} holds a control or unassigned character", field=field)
    return value
