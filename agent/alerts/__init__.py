"""Operator alerts: typed events, the Notifier protocol, fan-out and the channels."""
