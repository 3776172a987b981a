"""The ``interlock`` command: main, demo, report, serve, simulate."""
