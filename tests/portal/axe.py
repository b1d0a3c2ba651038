"""axe-core (pinned in `portal/assets.json`, test only: installed by `portal/install_assets.py`
into the git-ignored `tests/portal/vendor/`, never served by the portal) run in the page the
browser shows. Its source goes in through selenium's `execute_script` (the DevTools protocol,
which the page's Content-Security-Policy does not govern); the portal itself never loads it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selenium import webdriver

SOURCE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
#: the impacts that fail a page (issue 14, point 5)
FAILING = ("serious", "critical")

RUN = """
const [context, done] = [arguments[0], arguments[arguments.length - 1]];
axe.run(context || document, {resultTypes: ['violations']})
  .then(r => done(JSON.stringify({violations: r.violations, version: axe.version})),
        e => done(JSON.stringify({error: String(e)})));
"""


def source() -> str:
    if not SOURCE.is_file():
        raise AssertionError(f"{SOURCE} is missing: python3 portal/install_assets.py")
    return SOURCE.read_text()


def run(driver: webdriver.Chrome, context: Any = None) -> dict[str, Any]:
    """axe's violations of the page now shown (every impact), with axe's version."""
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(source())
    driver.set_script_timeout(120)
    answer = json.loads(driver.execute_async_script(RUN, context))
    assert "error" not in answer, answer
    return answer


def summary(violations: list[dict[str, Any]]) -> list[str]:
    """One line per violation: impact, rule, how many nodes, the first node's target."""
    return [
        f"{v['impact']}: {v['id']} ({len(v['nodes'])} x, e.g. {v['nodes'][0]['target']}): "
        f"{v['help']}"
        for v in violations
    ]


def failing(violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in violations if v["impact"] in FAILING]
