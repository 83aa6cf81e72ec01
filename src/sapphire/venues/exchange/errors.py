"""Bybit v5 error codes the local exchange answers with, and the error that carries one.

The codes are Bybit's own (ccxt maps each to its exception: 10001 BadRequest, 10002
InvalidNonce, 10003/10004 AuthenticationError, 10006 RateLimitExceeded, 110001
OrderNotFound, 110007/110044/170131 InsufficientFunds, 110017/110072 InvalidOrder,
110025 NoChange, 110043 BadRequest).
"""

from __future__ import annotations

__all__ = [
    "BAD_KEY",
    "BAD_PARAM",
    "BAD_SIGN",
    "DUPLICATE_LINK_ID",
    "EXPIRED",
    "INSUFFICIENT_CONTRACT",
    "INSUFFICIENT_SPOT",
    "LEVERAGE_MARGIN",
    "LEVERAGE_UNCHANGED",
    "MODE_UNCHANGED",
    "ORDER_NOT_FOUND",
    "RATE_LIMIT",
    "REDUCE_ONLY",
    "BybitError",
]

BAD_PARAM = 10001  # a parameter is missing, malformed or out of range
EXPIRED = 10002  # timestamp outside the recvWindow
BAD_KEY = 10003  # unknown API key
BAD_SIGN = 10004  # signature mismatch
RATE_LIMIT = 10006  # too many requests for this key and endpoint group
ORDER_NOT_FOUND = 110001  # order does not exist (or is too late to amend/cancel)
INSUFFICIENT_CONTRACT = 110007  # available balance too low for a contract order
REDUCE_ONLY = 110017  # a reduce-only order would not reduce the position
MODE_UNCHANGED = 110025  # the position mode is already the one asked for
LEVERAGE_UNCHANGED = 110043  # the leverage is already the one asked for
LEVERAGE_MARGIN = 110044  # the available margin does not cover the new leverage
DUPLICATE_LINK_ID = 110072  # orderLinkId already used
INSUFFICIENT_SPOT = 170131  # balance too low for a spot order


class BybitError(Exception):
    """A request the exchange refuses: answered with Bybit's envelope and `code`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
