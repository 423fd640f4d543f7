"""Chain access: RPC with failover, multicall, gas, nonces, transactions, address registry."""
