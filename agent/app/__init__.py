"""Construction and the runners: ``build`` (the one place that constructs things), ``runner``
(``defi-agent run``; never imports the devnet), ``rehearsal`` (dry-run and demo; may),
``report`` and ``control`` (the control surface shared by the CLI and Telegram)."""
