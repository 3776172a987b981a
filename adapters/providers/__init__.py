"""The provider adapters: the protocol, the codec base, the HTTP transport, SSE, command-line models."""
