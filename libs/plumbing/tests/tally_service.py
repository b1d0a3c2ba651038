"""A tiny service used by the plumbing tests: its worker tallies events per aggregate.

Run as `python tally_service.py relay|worker` with STUDYSHARE_* settings in the environment.
"""

from __future__ import annotations

from collections.abc import Sequence

from pymongo import UpdateOne

from studyshare.contracts.envelope import EventEnvelope
from studyshare.plumbing.cli import ServiceCLI
from studyshare.plumbing.projection import Projection, ProjectionContext
from studyshare.plumbing.settings import ServiceSettings


class TallySettings(ServiceSettings):
    service_name: str = "tally"


class Tally(Projection):
    """Counts applied events per aggregate and remembers every applied event id."""

    name = "tally"
    topics = ("share.events",)
    collections = ("counts", "applied")

    async def setup(self, ctx: ProjectionContext) -> None:
        await ctx.collection("applied").create_index("aggregate_id")

    async def apply(self, events: Sequence[EventEnvelope], ctx: ProjectionContext) -> None:
        await ctx.collection("counts").bulk_write(
            [UpdateOne({"_id": e.aggregate_id}, {"$inc": {"n": 1}}, upsert=True) for e in events],
            session=ctx.session,
        )
        await ctx.collection("applied").insert_many(
            [
                {
                    "event_id": str(e.event_id),
                    "aggregate_id": e.aggregate_id,
                    "version": e.aggregate_version,
                }
                for e in events
            ],
            session=ctx.session,
        )


cli = ServiceCLI(settings=TallySettings, app_factory="unused:app", projections=lambda s: [Tally()])

if __name__ == "__main__":
    cli()
