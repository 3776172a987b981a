"""The Anthropic Messages wire, codec and stream decoder."""
