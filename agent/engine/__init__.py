"""The engine: the tick loop that owns the run's tasks (``loop``)."""
