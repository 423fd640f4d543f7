"""Market state for one block: snapshot types (``snapshot``), the per-block builder and USD
pricing (``builder``), and the portfolio marked at the snapshot's prices (``portfolio``)."""
