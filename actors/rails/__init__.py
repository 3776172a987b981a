"""The rails an attempt passes: budget, lease, cache, verify, folded once into a chain."""
