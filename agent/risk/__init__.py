"""Risk: the pure rules of the gate (``gate``) and the persisted operator controls
(``controls``)."""
