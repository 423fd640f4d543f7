"""Errors raised by the local swap math where the on-chain code would revert."""

from __future__ import annotations

from agent.errors import SimulationRevert


class SwapRevert(SimulationRevert, ValueError):
    """The local simulation hit a ``require`` the chain would revert on.

    ``reason`` is the Solidity revert string where there is one (``'SPL'``, ``'LS'``,
    ``'UniswapV2Library: INSUFFICIENT_LIQUIDITY'``) or a short description otherwise. It is a
    ``ValueError`` too, because the arguments are what made the swap impossible.
    """


class InsufficientLiquidity(SwapRevert):
    """The pool cannot deliver the requested amount (the quoter and router would revert)."""
