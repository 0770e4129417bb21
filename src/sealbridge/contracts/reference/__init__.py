"""Reference contracts written against the contract SDK (token, DEX, auction, K-Means)."""
