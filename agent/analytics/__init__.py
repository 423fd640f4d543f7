"""Analytics of what the agent did: risk figures (``risk``: VaR, CVaR, Monte Carlo) and the
self-contained HTML reports (``html``) that ``report`` and ``backtest`` write.

Pure functions over plain numbers; they return frozen dataclasses with ``to_dict()`` so the
CLI, report.json and the HTTP API show the same figures. Nothing is imported here, so the CLI
starts without numpy or matplotlib.
"""
