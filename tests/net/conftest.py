from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "multiprocess: spawns peer processes (kept few: ~90 MB and slow imports each)")
