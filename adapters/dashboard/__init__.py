"""The read-only dashboard: the ledger as pages and charts, served by ``interlock serve`` at ``/ui``."""
