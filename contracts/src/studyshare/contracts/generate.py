"""Generate the checked-in JSON Schemas and AsyncAPI document from the event models.

`python -m studyshare.contracts.generate` writes them; `--check` fails when they drift.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from studyshare.contracts.envelope import EventEnvelope
from studyshare.contracts.events import registry
from studyshare.contracts.events.base import DomainEvent
from studyshare.contracts.topics import TOPICS, topic_for_aggregate

CONTRACTS_DIR = Path(__file__).resolve().parents[3]
SCHEMA_DIR = CONTRACTS_DIR / "schemas"
ASYNCAPI_PATH = CONTRACTS_DIR / "asyncapi.yaml"


def event_schema(cls: type[DomainEvent]) -> dict[str, Any]:
    schema = cls.model_json_schema()
    schema["$id"] = (
        f"https://studyshare.example/schemas/{cls.event_type}.v{cls.schema_version}.json"
    )
    schema["title"] = cls.event_type
    schema["description"] = inspect.cleandoc(cls.__doc__ or cls.event_type)
    schema["x-schema-version"] = cls.schema_version
    schema["x-aggregate-type"] = cls.aggregate_type
    schema["x-topic"] = topic_for_aggregate(cls.aggregate_type)
    return schema


def render() -> dict[Path, str]:
    """Every generated file and its exact content."""
    files: dict[Path, str] = {}
    envelope = EventEnvelope.model_json_schema()
    files[SCHEMA_DIR / "EventEnvelope.json"] = _dump_json(envelope)
    messages: dict[str, Any] = {}
    for cls in registry.all():
        files[SCHEMA_DIR / f"{cls.event_type}.json"] = _dump_json(event_schema(cls))
        messages[cls.event_type] = {
            "name": cls.event_type,
            "title": cls.event_type,
            "summary": inspect.cleandoc(cls.__doc__ or "").splitlines()[0] if cls.__doc__ else "",
            "contentType": "application/json",
            "headers": {"$ref": "./schemas/EventEnvelope.json"},
            "payload": {"$ref": f"./schemas/{cls.event_type}.json"},
            "x-schema-version": cls.schema_version,
        }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in TOPICS:
        names = [c.event_type for c in registry.all() if c.aggregate_type in topic.aggregate_types]
        channels[topic.name] = {
            "address": topic.name,
            "description": f"Written by {topic.owner}; keyed by aggregate id; "
            f"{topic.partitions} partitions; kept forever.",
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
            "bindings": {
                "kafka": {
                    "partitions": topic.partitions,
                    "topicConfiguration": {"retention.ms": -1},
                }
            },
        }
        operations[f"publish-{topic.name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{topic.name}"},
            "summary": f"{topic.owner} publishes its events through its outbox relay",
        }
    doc = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "StudyShare events",
            "version": "1.0.0",
            "description": "Every state change of StudyShare, one envelope for all events.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
    files[ASYNCAPI_PATH] = yaml.safe_dump(doc, sort_keys=False, width=100)
    return files


def _dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def drift() -> list[str]:
    """Generated files that are missing, stale, or no longer generated."""
    files = render()
    stale = [str(p) for p, text in files.items() if not p.exists() or p.read_text() != text]
    if SCHEMA_DIR.exists():
        stale += [str(p) for p in SCHEMA_DIR.glob("*.json") if p not in files]
    return stale


def main() -> None:
    if "--check" in sys.argv:
        stale = drift()
        if stale:
            print("contracts drifted; run `make contracts`:\n  " + "\n  ".join(stale))
            sys.exit(1)
        return
    SCHEMA_DIR.mkdir(exist_ok=True)
    files = render()
    for old in SCHEMA_DIR.glob("*.json"):
        if old not in files:
            old.unlink()
    for path, text in files.items():
        path.write_text(text)
    print(f"wrote {len(files)} files")


if __name__ == "__main__":
    main()
