"""The OpenTelemetry mirror of the ledger: spans, metrics, and the names they carry."""
