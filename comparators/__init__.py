"""Comparators: one module per answer shape, registered by name."""

from comparators import auth, backtest, generic, ohlcv, order, strategy

__all__ = ["auth", "backtest", "generic", "ohlcv", "order", "strategy"]
