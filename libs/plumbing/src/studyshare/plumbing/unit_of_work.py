"""The unit of work: one command, one transaction.

A command's work (load, decide, append, and the read models that follow its events) runs as a
callable of the transaction's session. The unit of work starts the session, commits, and runs
the work again from the start when the commit could not happen: on a transient transaction
error (a write conflict with a concurrent transaction, an unknown commit result) and when
another writer appended the same aggregate version first (`ConcurrencyConflict`). The work must
therefore read what it decides on inside the call, through the session it is given.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.mongo_client import AsyncMongoClient
from pymongo.errors import OperationFailure

from studyshare.plumbing.eventstore import ConcurrencyConflict

T = TypeVar("T")
Session = AsyncClientSession | None
Work = Callable[[Session], Awaitable[T]]
Retryable = Callable[[BaseException], bool]

#: how often a command is run again after another writer won its aggregate's next version
RETRIES = 8


WRITE_CONFLICT, NO_SUCH_TRANSACTION = 112, 251


def transient(exc: BaseException) -> bool:
    """Worth running again from the start: another writer won a version, or the transaction
    met a concurrent one (labelled transient, or by code where a server does not label)."""
    if isinstance(exc, ConcurrencyConflict):
        return True
    return isinstance(exc, OperationFailure) and (
        exc.has_error_label("TransientTransactionError")
        or exc.code in (WRITE_CONFLICT, NO_SUCH_TRANSACTION)
    )


class UnitOfWork(Protocol):
    async def run(
        self, work: Work[T], *, retries: int = RETRIES, retry_if: Retryable = transient
    ) -> T: ...


class MongoUnitOfWork:
    """Runs work in a MongoDB transaction, retried whole (see the module's docstring) after a
    short random pause, so that writers that met do not meet again."""

    def __init__(self, client: AsyncMongoClient) -> None:
        self.client = client

    async def run(
        self, work: Work[T], *, retries: int = RETRIES, retry_if: Retryable = transient
    ) -> T:
        for attempt in range(retries + 1):
            try:
                async with self.client.start_session() as session:
                    async with await session.start_transaction():
                        return await work(session)
            except Exception as exc:
                if attempt == retries or not retry_if(exc):
                    raise
            await asyncio.sleep(random.random() * 0.01 * (attempt + 1))
        raise AssertionError("unreachable")
