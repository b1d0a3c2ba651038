"""How `make test` spreads the suite over two pytest-xdist workers (`pytest -n 2`).

Most of the suite waits on real processes (the broker, the database, services it starts and
kills), not on the CPU, so two workers shorten it on a two-core machine. The end-to-end tests
under `tests/` share one running platform (`tests/conftest.py`), so they are one unit of work
for one worker; every other test module is a unit of its own, so its module-scoped servers start
once. (xdist's own `--dist loadgroup` marks groups by rewriting `Item._nodeid`, which pytest 9
no longer reads, so the grouping is a scheduler of our own.)
"""

from __future__ import annotations

import pytest

END_TO_END = "tests/"


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class EndToEndTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "end-to-end" if module.startswith(END_TO_END) else module

    return EndToEndTogether(config, log)
