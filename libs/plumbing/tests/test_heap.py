"""The `api` command's server settles the heap once the app has started (`plumbing.heap`);
apps built without it (tests, by the hundred) keep Python's collector as it was."""

from __future__ import annotations

import json
import subprocess
import sys

SERVE_AND_REPORT = """
import asyncio, gc, json
import uvicorn
from studyshare.plumbing.cli import SettledServer
from studyshare.plumbing.settings import ServiceSettings

async def app(scope, receive, send):
    while (message := await receive())["type"] != "lifespan.shutdown":
        if message["type"] == "lifespan.startup":
            before.extend([list(gc.get_threshold()), gc.get_freeze_count()])
            await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})

before = []
default = list(gc.get_threshold())
config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
server = SettledServer(config, ServiceSettings().gc_full_threshold)

async def main():
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    print(json.dumps([default, before, [list(gc.get_threshold()), gc.get_freeze_count()]]))
    server.should_exit = True
    await serving

asyncio.run(main())
"""


def test_the_api_server_freezes_start_up_objects_and_makes_full_collections_rarer():
    out = subprocess.run(
        [sys.executable, "-c", SERVE_AND_REPORT], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    default, (before_threshold, before_frozen), (threshold, frozen) = json.loads(out.stdout)
    assert before_threshold == default and before_frozen == 0, "the app starts as Python does"
    assert threshold == [default[0], default[1], 1000], "full collections are rarer"
    assert frozen > 10_000, "start-up's objects (modules, the app) are out of every collection"
