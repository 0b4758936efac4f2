"""Exceptions of the keyward client.

Every exception the client raises is a :class:`KeywardError`. An answer
of the agent's ``Error`` type is an :class:`AgentError`, and each error code
of the protocol has its subclass, so a program catches what it can handle::

    try:
        s = client.get("binance/mm-prod")
    except keyward.Denied:
        ...   # policy refuses this process, or there is no such secret
    except keyward.Unavailable:
        ...   # retry later

A code this client does not know (from a newer agent) is raised as a plain
:class:`AgentError`. ``message`` is for people; branch on the class or the
code, never on the text.
"""

from __future__ import annotations

from typing import Dict, Type


class KeywardError(Exception):
    """The base class of every error of this package."""


class AgentError(KeywardError):
    """An error answer from the agent: ``code`` is the protocol's stable
    error code, ``message`` the agent's text."""

    code = 0

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        if code:
            self.code = code
        self.message = message

    def __str__(self) -> str:
        return "agent: %s (%s)" % (self.message, code_name(self.code))


class NotFound(AgentError):
    """Code 1: the caller may read the name, but there is no such secret
    or version."""

    code = 1


class Denied(AgentError):
    """Code 2: policy refuses the caller, or the secret does not exist and
    the caller has no rule for it."""

    code = 2


class Expired(AgentError):
    """Code 3: the secret, or the version asked for, is past its expiry or
    its rotation's grace period."""

    code = 3


class Unavailable(AgentError):
    """Code 4: the agent cannot serve now; also raised when the agent
    cannot be reached. Retry with backoff."""

    code = 4


class BadRequest(AgentError):
    """Code 5: the request is malformed, or the agent does not know it."""

    code = 5


class RateLimited(AgentError):
    """Code 6: the caller sends too fast; retry with backoff."""

    code = 6


class InternalError(AgentError):
    """Code 7: the agent failed, or the secret is damaged at rest;
    retrying does not help, an operator must act."""

    code = 7


class ProtocolError(KeywardError):
    """The agent sent something this client does not understand, or the
    connection broke in the middle of an answer."""


class ClientClosed(KeywardError):
    """The client was used after :meth:`Client.close`."""


_BY_CODE: Dict[int, Type[AgentError]] = {
    c.code: c for c in (NotFound, Denied, Expired, Unavailable, BadRequest, RateLimited, InternalError)
}

_CODE_NAMES = {1: "not_found", 2: "denied", 3: "expired", 4: "unavailable", 5: "bad_request",
               6: "rate_limited", 7: "internal"}


def code_name(code: int) -> str:
    """The protocol's name of an error code, such as ``"not_found"``."""
    return _CODE_NAMES.get(code, "code %d" % code)


def from_answer(code: int, message: str) -> AgentError:
    """The exception for an error answer."""
    cls = _BY_CODE.get(code, AgentError)
    return cls(message, code)
