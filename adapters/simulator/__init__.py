"""The loopback fleet: a real HTTP server speaking the OpenAI, Anthropic and Gemini wires, and a fake CLI."""
