"""Off-chain and on-chain feeds: 1inch, CEX (ccxt), CoinGecko, X sentiment, whales, simulators.

Every feed returns ``agent.types.Reading`` values: the value, where it came from, when it was
fetched and how long it is good for; a failed poll keeps the last good value marked stale.
"""
