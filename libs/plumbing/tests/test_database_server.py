"""The local database reaps a transaction its client left open when it was killed (kill -9),
as mongod does, instead of blocking the documents it wrote for ever."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

from pymongo import AsyncMongoClient

from studyshare.plumbing import infra

LIFETIME_S = 2.0

CLIENT_KILLED_IN_A_TRANSACTION = """
import asyncio, sys, time
from pymongo import AsyncMongoClient

async def main(url):
    client = AsyncMongoClient(url)
    await client.ward.beds.insert_one({"_id": 0})
    async with client.start_session() as session:
        await session.start_transaction()
        await client.ward.beds.insert_one({"_id": 1}, session=session)
        await client.ward.beds.update_one({"_id": 0}, {"$set": {"v": 1}}, session=session)
        print("in the transaction", flush=True)
        time.sleep(600)

asyncio.run(main(sys.argv[1]))
"""


async def test_a_killed_clients_transaction_is_aborted_and_stops_blocking(tmp_path):
    port = infra.free_port()
    server = infra.database(
        port, tmp_path / "db", tmp_path / "db.log", transaction_lifetime_s=LIFETIME_S
    ).start()
    client = AsyncMongoClient(infra.mongo_url(port))
    try:
        doomed = subprocess.Popen(
            [sys.executable, "-c", CLIENT_KILLED_IN_A_TRANSACTION, infra.mongo_url(port)],
            stdout=subprocess.PIPE,
        )
        assert doomed.stdout.readline().strip() == b"in the transaction"
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        killed_at = time.monotonic()

        await asyncio.wait_for(
            client.ward.beds.update_one({"_id": 0}, {"$set": {"v": 2}}), LIFETIME_S + 10
        )
        assert time.monotonic() - killed_at >= LIFETIME_S - 1.0, "it waited for the lifetime"
        assert await client.ward.beds.find().to_list(None) == [{"_id": 0, "v": 2}], (
            "the killed transaction's writes were rolled back"
        )
        await asyncio.wait_for(client.drop_database("ward"), 10)
        assert "ward" not in await client.list_database_names()
    finally:
        await client.close()
        server.stop()
