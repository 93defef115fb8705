"""Resolve a client-named path or URI to a local file, only under the configured media roots.

Anything outside the roots, or with a scheme that is not allowed, is PERMISSION_DENIED, and the error never says
whether such a file exists (no probing of the server's filesystem through error messages).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from tessera.runtime.echo import shown
from tessera.runtime.errors import InvalidArgument, PermissionDenied


def resolve_media_path(uri: str, roots: list[Path], *, field: str) -> Path:
    if not uri.strip():
        raise InvalidArgument("must name a file", field=field)
    if len(uri) > 4096:
        raise InvalidArgument("longer than 4096 characters", field=field)
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        raw = unquote(parsed.path) if parsed.scheme == "file" else uri
    else:
        raise PermissionDenied(f"URI scheme {shown(parsed.scheme)} is not allowed (allowed: file)", field=field)
    if "\x00" in raw:
        raise InvalidArgument("contains a NUL byte", field=field)
    path = Path(os.path.realpath(raw))
    for root in roots:
        real_root = Path(os.path.realpath(root))
        if path == real_root or real_root in path.parents:
            if not path.is_file():
                raise InvalidArgument("no readable file at this path under the media roots", field=field)
            return path
    raise PermissionDenied("path is outside the configured media roots (TESSERA_MEDIA_ROOTS)", field=field)
