"""The operator console: an HTTP API and a dashboard served by the agent (127.0.0.1 by
default, bearer token, IP allowlist off loopback), live through server-sent events.

``agent.app.build.open_agent`` starts it (``ConsoleServer``) when ``console.enabled``.
"""
