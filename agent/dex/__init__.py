"""Uniswap-style DEX math, pool state and the per-block pool registry."""
