"""miliabot_tg: a Telegram bot for skin care around milia."""
