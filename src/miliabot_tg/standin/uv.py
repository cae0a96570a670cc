"""A stand-in of Open-Meteo's forecast API (`/v1/forecast`), on loopback, for tests.

It answers the shape the real service does for `hourly=uv_index&daily=uv_index_max,sunset
&timezone=auto`: local ISO times without an offset, `utc_offset_seconds`, null-free
arrays. Each place (by the rounded coordinates asked for) has a `Sky`: its zone, the
day's peak UV, sunrise and sunset; the UV follows a sine arc between them. It records
every request and misbehaves on demand: "error" (500), "bad_request" (400 with Open-Meteo's
`{"error": true, "reason": ...}`), "malformed" (not JSON), "wrong_shape" (JSON without the
arrays) and "timeout" (answers only after `hang_seconds`).
"""

import asyncio
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from aiohttp import web

Fault = Literal["error", "bad_request", "malformed", "wrong_shape", "timeout"]


@dataclass(frozen=True)
class Sky:
    """One place's weather, as the stand-in forecasts it every day."""

    zone: str = "Europe/Lisbon"
    peak: float = 7.0
    sunrise: float = 7.5  # local hours
    sunset: float = 18.0
    # The sunset the service reports, when it is not the end of the UV arc (a test of
    # "ends at sunset" needs UV of 3+ right up to it).
    reported_sunset: float | None = None

    def uv(self, hour: float) -> float:
        """UV at the middle of a local hour: a sine arc from sunrise to sunset."""
        if not self.sunrise < hour < self.sunset:
            return 0.0
        share = (hour - self.sunrise) / (self.sunset - self.sunrise)
        return round(self.peak * math.sin(math.pi * share), 2)


@dataclass
class UvStandIn:
    """The forecast server; `requests` holds the query of every call, in order."""

    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    default: Sky = field(default_factory=Sky)
    places: dict[tuple[float, float], Sky] = field(default_factory=dict)
    fault: Fault | None = None
    hang_seconds: float = 2.0
    requests: list[dict[str, str]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    url: str = ""

    async def __aenter__(self) -> "UvStandIn":
        app = web.Application()
        app.router.add_get("/v1/forecast", self._forecast)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        self._runner = runner
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _forecast(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append(query)
        if self.fault == "timeout":
            await asyncio.sleep(self.hang_seconds)
        if self.fault == "error":
            return web.Response(status=500, text="Internal Server Error")
        if self.fault == "bad_request":
            return web.json_response(
                {"error": True, "reason": "Latitude must be in range"}, status=400
            )
        if self.fault == "malformed":
            return web.Response(text='{"latitude": 38.7, "hourly": {"time": [', status=200)
        if self.fault == "wrong_shape":
            return web.json_response({"latitude": 38.7, "longitude": -9.1, "hourly": {}})
        try:
            key = (float(query["latitude"]), float(query["longitude"]))
        except (KeyError, ValueError):
            return web.json_response({"error": True, "reason": "Parameter missing"}, status=400)
        days = int(query.get("forecast_days", "7"))
        return web.Response(text=json.dumps(self.body(key, days)), content_type="application/json")

    def body(self, key: tuple[float, float], days: int) -> dict[str, object]:
        """The JSON the real service would send for this place, from today (its time) on."""
        sky = self.places.get(key, self.default)
        zone = ZoneInfo(sky.zone)
        local_now = self.clock().astimezone(zone)
        offset = local_now.utcoffset() or timedelta(0)
        first = local_now.date()
        times, values, dates, sunsets, peaks = [], [], [], [], []
        for n in range(days):
            day = first + timedelta(days=n)
            dates.append(day.isoformat())
            hours = [sky.uv(h + 0.5) for h in range(24)]
            peaks.append(max(hours))
            sunset = sky.sunset if sky.reported_sunset is None else sky.reported_sunset
            hour, minute = divmod(round(sunset * 60), 60)
            sunsets.append(f"{day.isoformat()}T{hour:02d}:{minute:02d}")
            for h, uv in enumerate(hours):
                times.append(f"{day.isoformat()}T{h:02d}:00")
                values.append(uv)
        return {
            "latitude": key[0],
            "longitude": key[1],
            "generationtime_ms": 0.1,
            "utc_offset_seconds": int(offset.total_seconds()),
            "timezone": sky.zone,
            "timezone_abbreviation": local_now.tzname(),
            "elevation": 10.0,
            "hourly_units": {"time": "iso8601", "uv_index": ""},
            "hourly": {"time": times, "uv_index": values},
            "daily_units": {"time": "iso8601", "uv_index_max": "", "sunset": "iso8601"},
            "daily": {"time": dates, "uv_index_max": peaks, "sunset": sunsets},
        }
