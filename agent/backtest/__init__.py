"""OHLCV backtests of the grid and DCA strategies through their live decision cores.

Modules: ``data`` (Candles, load_ohlcv, fetch_ohlcv via ccxt, generate_ohlcv), ``execution``
(BacktestSettings, fee/slippage/gas CostModel, Trade), ``engine`` (run_grid, run_dca with the
"vectorised" and "per_candle" drivers), ``metrics``, ``plots``, ``report`` (write_report),
``walkforward`` and ``command`` (the ``defi-agent backtest`` CLI). Nothing is imported here so
that the CLI starts without numpy/pandas/matplotlib.
"""
