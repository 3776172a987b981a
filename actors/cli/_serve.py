"""``interlock serve``: the OpenAI-compatible gateway over one door, served by uvicorn.

::

    interlock serve [--config FILE] [--host 127.0.0.1] [--port 4000] [--keys FILE] [--ledger FILE]
                    [--workers N] [--max-body-bytes N] [--grace SECONDS] [--log-level info]

With no ``--config`` it serves the embedded default (the simulated fleet), so it works with no
keys; with a config, hosted providers are enabled by their keys in the environment. ``--keys``
names a TOML file of virtual keys, each mapped to a tenant and caller::

    [keys."sk-ilk-0123456789abcdef"]
    tenant = "acme"
    caller = "billing-svc"

Without it any key (or none) is accepted as tenant ``default``, and the start-up banner says so,
after the URL to point clients at. A key is never printed: messages show its first 6 characters
at most. The server's libraries (starlette, uvicorn) are in the base install; when they are
missing anyway the command says, in one line, to ``pip install 'interlock[server]'``.

``--workers N`` runs N such gateways on the one port, each a process with its own door, under a
supervisor that restarts a worker that dies (``_workers``): they share state and ledger through
the configured stores, as gateways on several hosts do.

SIGINT / SIGTERM stop uvicorn gracefully (in-flight answers get ``--grace`` seconds), then the
door closes, which drains the requests in flight and commits every ledger record before the process exits.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
import threading
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import anyio
import msgspec

from interlock._errors import ConfigError
from interlock.actors.cli._ledger_file import check_ledger_path
from interlock.actors.cli._main import exit_on_bad_input, fail
from interlock.adapters._config_file import default_config, load_config
from interlock.policies._config import Config

if TYPE_CHECKING:
    import uvicorn

    from interlock.actors._door import Door
    from interlock.adapters.gateway._app import VirtualKey


def load_keys(path: str | Path) -> dict[str, VirtualKey]:
    """The virtual keys of a ``--keys`` TOML file; a ``ConfigError`` names the (masked) key at fault."""
    # The gateway (starlette) is imported only once the server's libraries are known to be there.
    from interlock.adapters.gateway._app import VirtualKey, mask_key

    keys_file = msgspec.defstruct(
        "KeysFile", [("keys", dict[str, VirtualKey], msgspec.field(default_factory=dict))],
        frozen=True, forbid_unknown_fields=True,
    )
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the keys file ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    table = raw.get("keys")
    if isinstance(table, dict):
        for key, value in table.items():
            where = f"keys.{mask_key(key)}"
            if len(key) < 16:
                raise ConfigError(where, "a key must be at least 16 characters long")
            try:
                msgspec.convert(value, VirtualKey)
            except msgspec.ValidationError as exc:
                raise ConfigError(where, str(exc).replace("`$.", "`")) from None
    try:
        keys: dict[str, VirtualKey] = getattr(msgspec.convert(raw, keys_file), "keys")  # noqa: B009
        return keys
    except msgspec.ValidationError as exc:  # only the top level is left to go wrong here
        raise ConfigError(str(path), str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="interlock serve", description="Serve the OpenAI-compatible gateway.")
    parser.add_argument("--config", help="the interlock TOML config (default: the embedded simulated fleet)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4000, help="port to listen on (default 4000; 0 picks one)")
    parser.add_argument("--keys", help="TOML file of virtual keys: [keys.\"sk-...\"] tenant, caller")
    parser.add_argument("--ledger", help="the SQLite ledger file (default: the config's ledger.path)")
    parser.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024, help="request body limit")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds in-flight answers get on shutdown")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--workers", type=int, default=1, help="gateway processes sharing the port (default 1)")
    # A worker of ``--workers N``: the listening socket, and the pipes to its supervisor (``_workers``).
    for hidden in ("--worker-fd", "--ready-fd", "--lifeline-fd", "--worker-index"):
        parser.add_argument(hidden, type=int, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``interlock serve`` until SIGINT or SIGTERM; returns the exit code (2: bad input, one line)."""
    ns = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    missing = missing_server_library()
    if missing is not None:
        return fail("serve", f"the gateway needs {missing}, which is not installed: pip install 'interlock[server]'")
    return exit_on_bad_input("serve", lambda: _run(ns))


def missing_server_library() -> str | None:
    """The name of the first server library (starlette, uvicorn) that cannot be imported, else None."""
    for name in ("starlette", "uvicorn"):
        try:
            __import__(name)
        except ImportError:
            return name
    return None


def _run(ns: argparse.Namespace) -> int:
    keys = load_keys(ns.keys) if ns.keys else None
    config = load_config(ns.config) if ns.config else default_config()
    # Looked at before the door opens: a bad path is one line, and a foreign file is never migrated.
    check_ledger_path(ns.ledger or config.ledger.path)
    if ns.workers < 1:
        raise ConfigError("--workers", "must be at least 1")
    if ns.workers > 1 and ns.worker_fd is None:
        return _supervise(ns, config, keys)
    anyio.run(_serve, ns, config, keys)
    return 0


def _supervise(ns: argparse.Namespace, config: Config, keys: dict[str, VirtualKey] | None) -> int:
    """Bind the port once and run ``ns.workers`` gateway processes on it (``_workers.Supervisor``)."""
    import os

    from interlock.actors._wiring import is_enabled
    from interlock.actors.cli._workers import Supervisor, listen

    sock = listen(ns.host, ns.port)
    url = _url(ns.host, int(sock.getsockname()[1]))
    argv = [f"--{name.replace('_', '-')}={value}" for name, value in vars(ns).items()
            if value is not None and name not in ("workers", "host", "port")]  # fmt: skip
    enabled = sorted(n for n, p in config.providers.items() if is_enabled(n, p, os.environ))

    def announce(pids: list[int]) -> None:
        _say(f"listening on {url}; OpenAI base URL {url}/v1, Anthropic base URL {url}")
        _say(f"dashboard at {url}/ui")
        _say(f"{len(pids)} workers (pids {', '.join(map(str, pids))}) sharing the port, state and ledger")
        _banner_tail(ns, keys, ", ".join(enabled) or "none (set the providers' key variables)")

    return Supervisor(argv, ns.workers, sock, ns.grace).run(announce)


async def _serve(ns: argparse.Namespace, config: Config, keys: dict[str, VirtualKey] | None) -> None:
    import uvicorn

    # Imported once the input is checked, so a bad config or ledger path is refused at once.
    from interlock.actors._door import open as open_door
    from interlock.adapters.gateway._app import build_app

    class Server(uvicorn.Server):
        """uvicorn's server, saying interlock's banner once it listens (so ``--port 0`` shows the port it got)."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and ns.ready_fd is not None:
                _worker_ready(ns.ready_fd)  # the supervisor says the banner, once, for all workers
            elif self.started:
                port = int(self.servers[0].sockets[0].getsockname()[1])
                await _announce(door, keys, ns, _url(ns.host, port))

    async with open_door(config, ledger_path=ns.ledger) as door:
        app = build_app(door, virtual_keys=keys, max_body_bytes=ns.max_body_bytes, dashboard_ledger=ns.ledger)
        server = uvicorn.Config(
            app, host=ns.host, port=ns.port, log_level=ns.log_level, lifespan="off", ws="none",
            timeout_graceful_shutdown=ns.grace, server_header=False,
        )
        serving = Server(server)
        shared = None if ns.worker_fd is None else [socket.socket(fileno=ns.worker_fd)]
        if ns.lifeline_fd is not None:
            _stop_when_orphaned(serving, ns.lifeline_fd)
        with _signals_absorbed():
            await serving.serve(sockets=shared)
    _say(f"stopped; ledger flushed to {ns.ledger or door.config.ledger.path}")


def _url(host: str, port: int) -> str:
    """Where a client on this machine reaches the server (a wildcard host is reached on loopback)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}"


async def _announce(door: Door, keys: dict[str, VirtualKey] | None, ns: argparse.Namespace, url: str) -> None:
    providers = ", ".join(sorted(await door.health())) or "none (set the providers' key variables)"
    _say(f"listening on {url}; OpenAI base URL {url}/v1, Anthropic base URL {url}")
    _banner_tail(ns, keys, providers)


def _banner_tail(ns: argparse.Namespace, keys: dict[str, VirtualKey] | None, providers: str) -> None:
    _say(f"config {ns.config or 'embedded default (simulated fleet)'}; providers: {providers}")
    if keys is None:
        _say("no --keys file: any API key is accepted (or none), as tenant 'default'")
    else:
        tenants = sorted({k.tenant for k in keys.values()})
        _say(f"{len(keys)} virtual key(s) from {ns.keys}, tenants: {', '.join(tenants) or 'none'}")


def _worker_ready(fd: int) -> None:
    """Tell the supervisor this worker listens (one byte on its ready pipe)."""
    import os

    with contextlib.suppress(OSError):
        os.write(fd, b"1")
        os.close(fd)


def _stop_when_orphaned(server: uvicorn.Server, fd: int) -> None:
    """Stop ``server`` gracefully once the supervisor is gone: its end of the lifeline pipe closes."""
    import os

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 64):
                pass
        server.should_exit = True  # read by uvicorn's main loop every 0.1 s

    threading.Thread(target=watch, name="interlock-lifeline", daemon=True).start()


def _say(line: str) -> None:
    print(f"interlock serve: {line}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _signals_absorbed() -> Iterator[None]:
    """Receive the SIGINT/SIGTERM that uvicorn raises again once it has stopped.

    uvicorn handles both signals while it serves, and re-raises the one it got when it returns so
    that the default action runs; for SIGTERM that would kill the process before the door closes
    and flushes the ledger. These handlers take that second delivery; the door then closes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def absorb(signum: int, frame: FrameType | None) -> None:
        _say(f"{signal.Signals(signum).name}: closing the door")

    previous = {sig: signal.signal(sig, absorb) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
