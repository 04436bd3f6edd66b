"""Secrets out of everything shown: the one place that knows what a password looks like.

Redaction works on *fields*: the password of a URL's userinfo, a ``password=`` query
parameter, a ``password``/``passwd`` key of connect parameters or of a document. It never
searches arbitrary text for the password's characters: a short or common password (``app``,
``o``, ``x``) would turn ``KeyError: 'app'`` into ``KeyError: '***'`` and mangle every
message and key that happens to contain it. Whatever is shown is built from password-free
fields (the driver's description, the redacted URL), so there is nothing to search for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

__all__ = ["MASK", "SECRET_KEYS", "describe", "redact_fields", "redact_params", "redact_text",
           "redact_url"]

#: What a secret is replaced with.
MASK = "***"
#: Names of connect parameters (and URL query parameters) that hold a password.
SECRET_KEYS = frozenset({"password", "passwd"})


def is_secret_key(key: Any) -> bool:
    return isinstance(key, str) and key.lower() in SECRET_KEYS


def redact_url(url: str) -> str:
    """The URL with its password (userinfo or ``password=`` parameter) replaced by ``***``.

    The credentials end at the *last* ``@`` before the path, as in ``urlsplit``, so a
    password with a raw ``@`` in it is hidden whole. Text that is not a URL is not echoed.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<not a URL>"
    slash = rest.find("/", rest.rfind("@") + 1) if "@" in rest else rest.find("/")
    netloc, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":" + MASK
    path, question, query = path.partition("?")
    if query:
        pairs = [(k, MASK if is_secret_key(k) else v)
                 for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="*/:")
    return f"{scheme}://{userinfo}{at}{host}{path}{question}{query}"


def redact_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Connect parameters with the value of every password key masked."""
    return {k: MASK if is_secret_key(k) and v else v for k, v in params.items()}


def redact_fields(value: Any) -> Any:
    """A JSON-like document with password fields masked and URLs redacted.

    Keys are never changed; a string is changed only if it is a URL with credentials.
    """
    if isinstance(value, Mapping):
        return {k: (MASK if is_secret_key(k) and v else redact_fields(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_fields(v) for v in value]
    if isinstance(value, str) and "://" in value and "@" in value:
        return redact_url(value)
    return value


def describe(scheme: str, name: Any, params: Mapping[str, Any]) -> str:
    """A URL describing a database given by arguments (``user``, ``host``...), no password."""
    if scheme == "sqlite":
        return f"sqlite:///{name}"
    user = params.get("user") or params.get("username")
    secret = any(params.get(key) for key in SECRET_KEYS)
    userinfo = f"{quote(str(user), safe='')}{':' + MASK if secret else ''}@" if user else ""
    host = str(params.get("host") or "")
    port = f":{params['port']}" if params.get("port") else ""
    return f"{scheme}://{userinfo}{host}{port}/{quote(str(name), safe='')}"


_URL_CREDENTIALS = re.compile(r"\b([A-Za-z][\w+.-]*://[^\s:/@]*):[^\s@/]*@")
_KEY_VALUE = re.compile(r"\b(password|passwd)(\s*[=:]\s*)('(?:[^'\\]|\\.)*'|\"[^\"]*\"|\S+)",
                        re.IGNORECASE)


def redact_text(text: str) -> str:
    """A driver's message with the password *fields* it may quote masked: the password of
    a URL (``scheme://user:pw@``) and ``password=...`` pairs (libpq conninfo). Never a
    search for the password's characters."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}:{MASK}@", text)
    return _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
