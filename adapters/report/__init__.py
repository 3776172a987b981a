"""Rendering the ledger's rollups: report and quality tables for people, JSON for machines."""
