"""The Bot API stand-in in a process of its own, driven by one-line commands on stdin.

The dispatch and punctuality benchmarks run the bot in their own process and the stand-in
here, so that the bot's CPU figures are the bot's alone and the stand-in's work does not
delay the bot's event loop (Telegram is another machine, after all).

Protocol: the first line printed is the API root. Then, per line read from stdin:
``count`` prints ``{"sent": <sendMessage answered 200>, "rate_limited": <429s>}``;
``dump PATH`` writes every sendMessage call as ``[chat_id, at, status]`` to PATH as JSON
and prints ``ok``; ``quit`` (or end of input) stops. ``at`` is the wall-clock time
(``time.time()``) at which the request arrived, because the stand-in runs on that clock.
"""

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from miliabot_tg.standin import StandIn


def _rate(text: str) -> float | None:
    return None if text == "off" else float(text)


def _sends(standin: StandIn) -> list[tuple[int, float, int | None]]:
    return [
        (int(call.params.get("chat_id", 0)), call.at, call.status)
        for call in standin.calls
        if call.method == "sendMessage"
    ]


async def serve(global_rate: float | None, chat_rate: float | None) -> None:
    """Run the stand-in until told to quit."""
    async with StandIn(global_rate=global_rate, chat_rate=chat_rate, clock=time.time) as standin:
        print(standin.api_root, flush=True)
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            command, _, argument = line.strip().partition(" ")
            if command in ("", "quit"):
                return
            if command == "count":
                sent = sum(1 for c in standin.calls if c.method == "sendMessage" and c.ok)
                reply = {"sent": sent, "rate_limited": standin.rate_limited}
                print(json.dumps(reply), flush=True)
            elif command == "dump":
                dump = json.dumps(_sends(standin))
                await asyncio.to_thread(Path(argument).write_text, dump)
                print("ok", flush=True)
            else:
                print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)


def main() -> None:
    """Parse the rates and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--global-rate", type=_rate, default=None, help="messages/s or off")
    parser.add_argument("--chat-rate", type=_rate, default=None, help="messages/s or off")
    args = parser.parse_args()
    asyncio.run(serve(args.global_rate, args.chat_rate))


if __name__ == "__main__":
    main()
