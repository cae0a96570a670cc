"""Reminders: /remind, /reminders, /timezone, /quiet, /stop and the buttons on reminder
messages, one module per flow (`handlers` registers them all), with their strings and
keyboards in `texts`.

Import from the modules themselves: the flows import `miliabot_tg.handlers`, which
imports `texts` from here, so this file must stay free of imports.
"""
