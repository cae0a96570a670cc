"""Print the robustness figures at the end of a run that collected any."""

import pytest

from tests.robustness.results import ROWS, lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if ROWS:
        terminalreporter.section("robustness figures")
        for line in lines(ROWS):
            terminalreporter.write_line(line)
