"""``interlock dashboard``: the read-only dashboard over a ledger file, with no gateway running.

::

    interlock dashboard --ledger interlock-demo.sqlite [--port 4100] [--host 127.0.0.1]
                        [--config FILE] [--keys FILE]

Open the URL it prints. ``--config`` draws the tenants' daily budgets; ``--keys`` (the gateway's
virtual keys file) lets each key sign in to its own tenant's figures; ``INTERLOCK_ADMIN_KEY``
sets a key that sees every tenant. With neither, the dashboard is open to whoever reaches the
port, so it listens on 127.0.0.1 unless ``--host`` says otherwise. The ledger is only read (the
first page view adds the dashboard's indexes to the file, see ``docs/dashboard.md``).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from interlock.actors.cli._ledger_file import check_ledger_path
from interlock.actors.cli._main import exit_on_bad_input, fail
from interlock.actors.cli._serve import load_keys, missing_server_library
from interlock.adapters._config_file import load_config
from interlock.adapters.dashboard._access import ADMIN_ENV, admin_key_from

if TYPE_CHECKING:
    from interlock.adapters.gateway._edge import VirtualKey
    from interlock.policies._budget import BudgetConfig

DEFAULT_PORT = 4100


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="interlock dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", default="interlock.sqlite", help="the SQLite ledger file to show")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 picks a free port")
    parser.add_argument("--config", default=None, help="the TOML config that served: its tenants' budgets are drawn")
    parser.add_argument("--keys", default=None, help="the gateway's virtual keys file: each key sees its own tenant")
    parser.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the dashboard until SIGINT or SIGTERM; 2 with one line on bad input."""
    ns = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    missing = missing_server_library()
    if missing is not None:
        return fail(
            "dashboard", f"the dashboard needs {missing}, which is not installed: pip install 'interlock[server]'"
        )
    return exit_on_bad_input("dashboard", lambda: _run(ns))


def _run(ns: argparse.Namespace) -> int:
    if not Path(ns.ledger).is_file():
        return fail("dashboard", f"no ledger at {ns.ledger} (run `interlock demo` or `interlock serve` first)")
    check_ledger_path(ns.ledger)
    budgets = load_config(ns.config).budgets if ns.config else None
    keys = load_keys(ns.keys) if ns.keys else None
    anyio.run(_serve, ns, budgets, keys)
    return 0


async def _serve(ns: argparse.Namespace, budgets: BudgetConfig | None, keys: dict[str, VirtualKey] | None) -> None:
    import uvicorn

    from interlock.adapters.dashboard._app import dashboard_app

    admin = admin_key_from(os.environ)
    app = dashboard_app(ns.ledger, virtual_keys=keys, admin_key=admin, budgets=budgets)

    class Server(uvicorn.Server):
        """uvicorn's server, printing the dashboard's URL once it listens (so ``--port 0`` shows its port)."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                port = int(self.servers[0].sockets[0].getsockname()[1])
                host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(ns.host, ns.host)
                print(f"interlock dashboard: http://{host}:{port}/ui  (ledger {ns.ledger})", flush=True)
                if keys is None and admin is None:
                    print(f"interlock dashboard: no keys: open to anyone who reaches {ns.host}:{port}", flush=True)
                else:
                    print(f"interlock dashboard: sign in with a gateway key or ${ADMIN_ENV}", flush=True)

    config = uvicorn.Config(
        app,
        host=ns.host,
        port=ns.port,
        log_level=ns.log_level,
        lifespan="off",
        ws="none",
        server_header=False,
        access_log=False,
    )
    await Server(config).serve()
