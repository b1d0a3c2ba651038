"""How `make test` spreads the suite over two pytest-xdist workers (`--dist loadgroup`).

Most of the suite waits on real processes (the broker, the database, services it starts and
kills), not on the CPU, so two workers halve its time on a two-core machine. The end-to-end
tests under `tests/` share one running platform (`tests/conftest.py`), so they stay together on
one worker; every other test module is one group, so its module-scoped servers start once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).parent
END_TO_END = ROOT / "tests"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(item.path)
        group = "end-to-end" if END_TO_END in path.parents else str(path.relative_to(ROOT))
        item.add_marker(pytest.mark.xdist_group(group))
