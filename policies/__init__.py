"""interlock.policies."""
