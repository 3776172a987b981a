"""The inbound HTTP server: the Starlette app and its OpenAI-dialect codec over the canonical types."""
