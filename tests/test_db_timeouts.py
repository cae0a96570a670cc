"""PostgreSQL connections that cannot hang: timeouts and keepalives on every connection."""

import os
import socket
import time
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from miliabot_tg.db import make_engine, migrate
from tests.stalling_proxy import stalling_proxy

pytestmark = pytest.mark.postgres


def test_every_connection_has_statement_idle_and_tcp_timeouts(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    with engine.connect() as connection:
        shown = {
            name: connection.exec_driver_sql(f"SHOW {name}").scalar()
            for name in ("statement_timeout", "idle_in_transaction_session_timeout")
        }
        # What libpq actually set on the socket, not just what it was asked for.
        fd = connection.connection.dbapi_connection.pgconn.socket  # type: ignore[union-attr]
        sock = socket.socket(fileno=os.dup(fd))
        try:
            options = {
                "keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                "idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                "interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                "count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                "user_timeout_ms": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
            }
        finally:
            sock.close()
    engine.dispose()
    assert shown == {"statement_timeout": "10s", "idle_in_transaction_session_timeout": "30s"}
    assert options == {
        "keepalive": 1,
        "idle": 10,
        "interval": 5,
        "count": 3,
        "user_timeout_ms": 15000,
    }


def test_a_server_that_never_answers_fails_the_connection_within_seconds(
    postgres_url: str,
) -> None:
    with stalling_proxy(postgres_url) as proxy:
        proxy.stall(at_most=20)  # accepts the connection, never answers the start-up
        engine = make_engine(proxy.url(postgres_url))
        started = time.monotonic()
        with pytest.raises(OperationalError, match="timeout"), engine.connect():
            pass
        waited = time.monotonic() - started
        engine.dispose()
    assert waited < 10, f"gave up after {waited:.1f} s"


def test_the_database_url_can_change_the_limits(postgres_url: str) -> None:
    url = f"{postgres_url}?options={quote('-c statement_timeout=200')}&connect_timeout=3"
    engine = make_engine(url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "200ms"
        with pytest.raises(OperationalError, match="statement timeout"):
            connection.execute(text("SELECT pg_sleep(1)"))
        raw = connection.connection.dbapi_connection
        assert raw.info.get_parameters()["connect_timeout"] == "3"  # type: ignore[union-attr]
    engine.dispose()


def test_migrations_run_without_the_statement_timeout(postgres_url: str) -> None:
    """A migration may rewrite a large table for longer than any query of the bot may take."""
    engine = make_engine(postgres_url)
    limits: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _check(_conn: object, cursor: Any, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith(("CREATE", "ALTER")):
            # Straight through the driver, so this query does not come back here.
            limits.append(cursor.connection.execute("SHOW statement_timeout").fetchone()[0])

    migrate(engine)
    engine.dispose()
    assert limits
    assert set(limits) == {"0"}
