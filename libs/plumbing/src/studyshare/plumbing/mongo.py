"""MongoDB client factory (PyMongo's async API)."""

from __future__ import annotations

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from studyshare.plumbing.settings import ServiceSettings


def mongo_client(settings: ServiceSettings) -> AsyncMongoClient:
    return AsyncMongoClient(settings.mongo_url, tz_aware=True, uuidRepresentation="standard")


def service_database(client: AsyncMongoClient, settings: ServiceSettings) -> AsyncDatabase:
    return client[settings.database_name]
