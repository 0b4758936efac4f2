"""keyward: the Python client of the keyward agent.

The agent holds exchange API secrets in memory, sealed at rest by an HSM or
a TPM, and hands them, or signatures made with them, only to the local
processes its policy names::

    import keyward

    with keyward.Client() as c:          # $KEYWARD_SOCKET or /run/keyward/agent.sock
        with c.get("binance/mm-prod") as secret:
            ...                          # a bytearray, zeroed at the end of the block

        signed = c.sign("binance/mm-prod", "POST", "api.binance.com", "/api/v3/order",
                        body=b"symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001")

The package uses only the standard library. See python/README.md.
"""

from .client import (DEFAULT_SOCKET, SOCKET_ENV, Client, Credential, Health, Problem, Secret, Signed,
                     Status)
from .errors import (AgentError, BadRequest, ClientClosed, Denied, Expired, InternalError, KeywardError,
                     NotFound, ProtocolError, RateLimited, Unavailable)
from .watch import Change, Watch

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SOCKET", "SOCKET_ENV", "Client", "Credential", "Health", "Problem", "Secret", "Signed", "Status",
    "Change", "Watch",
    "KeywardError", "AgentError", "NotFound", "Denied", "Expired", "Unavailable", "BadRequest", "RateLimited",
    "InternalError", "ProtocolError", "ClientClosed",
]
