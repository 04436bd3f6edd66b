"""Rotating credentials: connect parameters evaluated for each new connection.

The ``password`` (or ``passwd``) connect parameter may be a callable returning the password,
and a ``credentials`` parameter a callable returning a mapping of connect parameters
(``user``, ``password``, ``host``, ...) that override the others: short-lived tokens
(IAM-style authentication), a secret store's rotation, a fail-over address. They are called
for each new connection, inside the driver's ``connect`` (which the pool runs with no lock
held), never cached. One that raises becomes a :class:`CredentialsError` carrying only the
exception's type: its message is withheld, since a secret store's error may quote the very
secret. Connections opened before a rotation stay as they are (the server keeps an
authenticated session), new ones use what the callable returns now.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

#: Connect parameters that may be given as a callable returning the value.
CALLABLE_SECRETS = ("password", "passwd")


#: The connect parameter naming a callable that returns several connect parameters.
CREDENTIALS = "credentials"


class CredentialsError(Exception):
    """A credentials callable failed or returned something unusable.

    The message names the parameter and the exception's type only; the pool wraps it in
    its ``ConnectError`` (peewee layer: ``ConnectFailed``) naming the pool.
    """


def check_credentials(params: Mapping[str, Any]) -> None:
    """ConfigError at start-up if ``credentials`` is given and is not callable."""
    value = params.get(CREDENTIALS)
    if CREDENTIALS in params and not callable(value):
        raise ConfigError(CREDENTIALS, "expected a callable returning a mapping of connect "
                          f"parameters (user, password, host, ...), got {type(value).__name__}")


def has_dynamic_credentials(params: Mapping[str, Any]) -> bool:
    """True if any connect parameter is evaluated per connect."""
    return CREDENTIALS in params or any(callable(params.get(k)) for k in CALLABLE_SECRETS)


def static_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` without what is evaluated per connect (for validation and descriptions):
    a callable password becomes ``""``, ``credentials`` is dropped."""
    out = {k: v for k, v in params.items() if k != CREDENTIALS}
    for key in CALLABLE_SECRETS:
        if callable(out.get(key)):
            out[key] = ""
    return out


def resolve_credentials(params: Mapping[str, Any]) -> dict[str, Any]:
    """The connect parameters for one new connection: every callable called now.

    Raises :class:`CredentialsError` (no secret in it, no exception chained to it) when a
    callable raises an ``Exception`` or returns the wrong type; a ``BaseException``
    (KeyboardInterrupt, SystemExit, gevent.Timeout) propagates unchanged.
    """
    if not has_dynamic_credentials(params):
        return dict(params)
    resolved = static_params(params)
    failure: str | None = None
    source = params.get(CREDENTIALS)
    try:
        if source is not None:
            failure = f"{CREDENTIALS!r} callable"
            values = source()
            if not isinstance(values, Mapping):
                raise CredentialsError(f"the {CREDENTIALS!r} callable returned "
                                       f"{type(values).__name__}, expected a mapping")
            resolved.update(values)
        for key in CALLABLE_SECRETS:
            getter = params.get(key)
            if callable(getter) and not (source is not None and key in values):
                failure = f"{key!r} callable"
                value = getter()
                if not isinstance(value, (str, bytes)):
                    raise CredentialsError(f"the {key!r} callable returned "
                                           f"{type(value).__name__}, expected str")
                resolved[key] = value
        failure = None
    except CredentialsError:
        raise
    except Exception as exc:
        kind = type(exc).__name__
    else:
        return resolved
    # Raised outside the except block: nothing chains the original (its message, its
    # traceback's locals) to what the pool logs and re-raises.
    raise CredentialsError(f"the {failure} raised {kind} (its message is withheld: it may "
                           "contain a secret)")
