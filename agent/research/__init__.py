"""Research tools over the backtests: ``hyperopt`` (Optuna parameter search scored out of sample)
and ``signal`` (a small walk-forward ML direction signal DCA can weight its buys by). Nothing is
imported here so that the CLI starts without optuna/scikit-learn.
"""
