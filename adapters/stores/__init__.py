"""The stores behind the rails and the ledger: the SQLite file, migrations, ledger and state stores."""
