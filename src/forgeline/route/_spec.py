"""What every sink spec shares: strict models (unknown fields refused) and the ways to
authenticate to a target."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PATH_RE", "BasicAuth", "BearerAuth", "HeaderAuth", "Strict"]

# An event path: ``subject``, ``id``, ``data.quantity``, ``data.lines.0.sku``.
PATH_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+))*")


class Strict(BaseModel):
    # Unknown fields are refused: a typo in a policy must not silently become a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class BearerAuth(Strict):
    type: Literal["bearer"]
    token: str = Field(min_length=1)


class BasicAuth(Strict):
    type: Literal["basic"]
    username: str
    password: str


class HeaderAuth(Strict):
    type: Literal["header"]
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9-]+$")
    value: str
