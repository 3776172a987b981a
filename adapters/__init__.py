"""interlock.adapters."""
