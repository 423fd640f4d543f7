"""The keystore and the Signer, the only holder of the key (``keystore``)."""
