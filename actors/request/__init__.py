"""The walk of one request: plan, cache, attempts with fallback and hedging, verify, records."""
