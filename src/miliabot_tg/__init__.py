"""miliabot_tg: a Telegram bot for skin care around milia."""

import os

# Opt in to PTB's coming behaviour (RetryAfter.retry_after as a timedelta) now; without it,
# PTB warns on every 429 it raises. Set before telegram is first imported.
os.environ.setdefault("PTB_TIMEDELTA", "true")
