"""A TCP proxy, in a thread of its own, that can stop forwarding the way a stuck database
or a network dropping packets does: connections stay open and nothing comes back."""

import asyncio
import threading
from contextlib import suppress
from typing import Any

from sqlalchemy.engine import make_url


class StallingProxy:
    """Forwards 127.0.0.1:<port> to a server until told to stall, resume or refuse."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._refusing = False
        self._auto_resume: asyncio.TimerHandle | None = None
        self._server: asyncio.Server | None = None
        self.port = 0
        # Bytes the bot sent while stalled: proof that it tried the database meanwhile.
        self.held_bytes = 0

    def url(self, url: str) -> str:
        """The same database URL, pointing at the proxy instead."""
        rendered = make_url(url).set(host="127.0.0.1", port=self.port)
        return rendered.render_as_string(hide_password=False)

    # --- control, from the test's thread --------------------------------------------------

    def stall(self, *, at_most: float) -> None:
        """Stop forwarding on every connection and hold new ones (accept, never answer).

        After `at_most` seconds it resumes by itself, so that a bot whose event loop is
        stuck on the database still lets its test end (and fail).
        """
        self._call(self._stall, at_most)

    def resume(self, *, reset: bool = False) -> None:
        """Forward again; with `reset`, first drop every connection (the database restarted)."""
        self._call(self._resume, reset)

    def refuse(self) -> None:
        """Drop every connection and close new ones at once: the database is down."""
        self._call(self._refuse)

    # --- inside the proxy's loop ------------------------------------------------------------

    def _call(self, fn: Any, *args: object) -> None:
        async def run() -> None:
            fn(*args)

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=5)

    def _stall(self, at_most: float) -> None:
        self._flowing.clear()
        self._auto_resume = self._loop.call_later(at_most, self._flowing.set)

    def _resume(self, reset: bool) -> None:
        if self._auto_resume is not None:
            self._auto_resume.cancel()
        self._refusing = False
        if reset:
            self._drop_all()
        self._flowing.set()

    def _refuse(self) -> None:
        self._refusing = True
        self._drop_all()
        self._flowing.set()

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _start(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        self._writers.add(writer)
        await self._flowing.wait()
        if self._refusing:  # refused while it waited
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(upstream_writer)
        await asyncio.gather(
            self._pump(reader, upstream_writer),
            self._pump(upstream_reader, writer),
            return_exceptions=True,
        )
        for end in (writer, upstream_writer):
            end.transport.abort()
            self._writers.discard(end)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if not self._flowing.is_set():
                    self.held_bytes += len(data)
                    await self._flowing.wait()
                if writer.transport.is_closing():
                    return
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._refuse()  # every connection ends, and each task with it
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.wait_for(asyncio.gather(*others, return_exceptions=True), timeout=2)

    def __enter__(self) -> "StallingProxy":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=5)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def stalling_proxy(url: str) -> StallingProxy:
    """A proxy in front of the database at `url`; use it as a context manager."""
    parsed = make_url(url)
    return StallingProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
