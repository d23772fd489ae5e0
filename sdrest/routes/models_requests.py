"""What the model routes accept: their request bodies as structs with limits in their types, the sort keys of
`GET /api/v1/models`, and the one decoder that turns a bad body into a 422.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from sdrest.library.architectures import ROLES
from sdrest.library.convert import CONVERT_TYPES

Name = Annotated[str, Meta(min_length=1, max_length=512)]
SORTS = ("name", "size", "date", "role")


class ConvertRequest(msgspec.Struct, forbid_unknown_fields=True):
    model: Name
    type: Literal[CONVERT_TYPES]  # type: ignore[valid-type]
    output: Name | None = None
    force: bool = False


class HashRequest(msgspec.Struct, forbid_unknown_fields=True):
    models: Annotated[list[Name], Meta(min_length=1, max_length=1000)]


class DownloadRequest(msgspec.Struct, forbid_unknown_fields=True):
    repo_id: Name | None = None
    filename: Name | None = None
    revision: Name | None = None
    url: Annotated[str, Meta(max_length=4096)] | None = None
    role: Literal[tuple(r for r in ROLES if r != "unknown")] | None = None  # type: ignore[valid-type]


class PullRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: Name


class ValidateRequest(msgspec.Struct, forbid_unknown_fields=True):
    load: bool = False


class RestoreRequest(msgspec.Struct, forbid_unknown_fields=True):
    id: Name
