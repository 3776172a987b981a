"""Where the stores live: URLs and paths from config and environment, and no password ever shown."""

from __future__ import annotations

import pytest

from interlock import ConfigError
from interlock.actors._tree import store_urls
from interlock.policies._config import parse_config
from interlock.policies._store_url import LEDGER_KINDS, STATE_KINDS, parse_store_url, redact_url

SECRET = "hunter2-Secret"


def test_a_plain_path_and_a_sqlite_url_are_the_embedded_store() -> None:
    assert parse_store_url("ledger.db", key="ledger.url", allowed=LEDGER_KINDS).path == "ledger.db"
    assert parse_store_url("sqlite:///rel/ledger.db", key="ledger.url", allowed=LEDGER_KINDS).path == "rel/ledger.db"
    absolute = parse_store_url("sqlite:////var/lib/x.db", key="ledger.url", allowed=LEDGER_KINDS)
    assert (absolute.kind, absolute.path) == ("sqlite", "/var/lib/x.db")


def test_server_urls_are_told_apart_by_section() -> None:
    assert parse_store_url("redis://127.0.0.1:6379/0", key="state.url", allowed=STATE_KINDS).kind == "redis"
    assert parse_store_url("postgres://u@127.0.0.1/x", key="ledger.url", allowed=LEDGER_KINDS).kind == "postgresql"
    with pytest.raises(ConfigError) as caught:
        parse_store_url("postgresql://u@127.0.0.1/x", key="state.url", allowed=STATE_KINDS)
    assert caught.value.key == "state.url"
    assert "postgresql://" in str(caught.value)
    assert "redis://" in str(caught.value)


def test_a_password_in_a_config_file_is_refused_without_being_quoted() -> None:
    text = f'[ledger]\nurl = "postgresql://app:{SECRET}@127.0.0.1:5432/interlock"\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.key == "ledger.url"
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    assert "INTERLOCK_LEDGER_URL" in str(caught.value)


def test_the_environment_may_carry_a_password_and_it_is_never_shown() -> None:
    config = parse_config('[state]\nurl = "redis://127.0.0.1:1/0"\n')
    environ = {
        "INTERLOCK_LEDGER_URL": f"postgresql://app:{SECRET}@127.0.0.1:5432/interlock",
        "INTERLOCK_STATE_URL": f"redis://:{SECRET}@127.0.0.1:6380/2",
    }
    ledger, state = store_urls(config, None, environ)
    assert (ledger.kind, state.kind) == ("postgresql", "redis")
    assert SECRET in ledger.url
    assert SECRET in state.url
    for shown in (ledger.shown, state.shown, repr(ledger), repr(state), str([ledger, state])):
        assert SECRET not in shown
    assert ledger.shown == "postgresql://app:***@127.0.0.1:5432/interlock"
    assert state.shown == "redis://:***@127.0.0.1:6380/2"


def test_with_no_state_store_named_the_state_lives_in_the_ledger_file() -> None:
    config = parse_config('[ledger]\npath = "here.sqlite"\n')
    ledger, state = store_urls(config, None, {})
    assert (ledger.kind, ledger.path, state.kind, state.path) == ("sqlite", "here.sqlite", "sqlite", "here.sqlite")
    explicit, state = store_urls(config, "given.sqlite", {"INTERLOCK_LEDGER_URL": "postgresql://u@127.0.0.1/x"})
    assert explicit.path == "given.sqlite"
    assert state.path == "given.sqlite"
    on_server, state = store_urls(config, None, {"INTERLOCK_LEDGER_URL": "postgresql://u@127.0.0.1/x"})
    assert on_server.kind == "postgresql"
    assert (state.kind, state.path) == ("sqlite", "here.sqlite")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        (f"rediss://user:{SECRET}@[::1]:6380/0", "rediss://user:***@[::1]:6380/0"),
        (f"postgresql://u:{SECRET}@127.0.0.1/db?sslmode=disable", "postgresql://u:***@127.0.0.1/db?sslmode=disable"),
    ],
)
def test_redaction_keeps_everything_but_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_bad_urls_name_their_key() -> None:
    with pytest.raises(ConfigError, match="unsupported scheme mysql://"):
        parse_store_url("mysql://x", key="ledger.url", allowed=LEDGER_KINDS)
    with pytest.raises(ConfigError, match="needs a path"):
        parse_store_url("sqlite://", key="ledger.url", allowed=LEDGER_KINDS)
    with pytest.raises(ConfigError) as caught:
        bad_port = f"redis://:{SECRET}@127.0.0.1:notaport/0"
        parse_store_url(bad_port, key="$INTERLOCK_STATE_URL", allowed=STATE_KINDS, from_env=True)
    assert caught.value.key == "$INTERLOCK_STATE_URL"
    assert SECRET not in str(caught.value)
