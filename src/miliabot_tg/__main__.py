"""Allow `python -m miliabot_tg`."""

from miliabot_tg.cli import main

main()
