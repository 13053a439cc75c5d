"""Validate machina's --json documents against the JSON Schemas of docs/schema/."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "docs" / "schema"


@cache
def _registry() -> Registry[Any]:
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.schema.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


def validate(doc: Any, command: str) -> None:
    """Raise jsonschema.ValidationError unless doc is a valid `command --json` document."""
    schema = json.loads((SCHEMA_DIR / f"{command}.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema, registry=_registry()).validate(doc)


def parse_document(stdout: str, command: str) -> Any:
    """The one JSON document a --json command printed (object + newline), validated."""
    assert stdout.endswith("\n") and stdout.count("\n") == 1, stdout
    doc = json.loads(stdout)
    validate(doc, command)
    return doc
