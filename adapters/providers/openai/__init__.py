"""The OpenAI Chat Completions wire, codec and stream decoder (also OpenAI-compatible servers)."""
