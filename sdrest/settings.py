"""The one settings object, read once and passed down.

Precedence: command-line flag > `SDREST_<NAME>` environment variable > config file (TOML, `--config` or
`SDREST_CONFIG`) > default. The same names work everywhere: `--models-dir`, `SDREST_MODELS_DIR`, `models_dir = …`.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta


def _data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "sdrest"


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Every setting of sdrest. README.md documents each one (a test checks)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535)] = 7860
    data_dir: Path = msgspec.field(default_factory=_data_home)
    models_dir: Path | None = None  # default: <data_dir>/models
    config: Path | None = None
    log_level: str = "info"
    # generation worker
    threads: Annotated[int, Meta(ge=0)] = 0  # 0: the machine's physical cores
    idle_unload_seconds: Annotated[float, Meta(ge=0)] = 600.0  # 0: keep the model loaded
    lora_apply_mode: str = "at_runtime"
    engine_options: dict[str, Any] = {}  # load options for every model (README "Engine options"); a TOML table
    fit_memory: bool = True  # choose offload/tiling options so a model fits free memory; refuse what cannot fit
    # queue and outputs
    queue_size: Annotated[int, Meta(ge=1)] = 100
    retention_days: Annotated[float, Meta(ge=0)] = 0.0  # 0: keep outputs forever
    # request limits
    max_side: Annotated[int, Meta(ge=64)] = 2048
    max_pixels: Annotated[int, Meta(ge=4096)] = 2048 * 2048
    max_batch: Annotated[int, Meta(ge=1)] = 8
    max_prompt_chars: Annotated[int, Meta(ge=1)] = 10000
    max_body_bytes: Annotated[int, Meta(ge=1024)] = 64 * 1024 * 1024
    max_input_bytes: Annotated[int, Meta(ge=1024)] = 32 * 1024 * 1024  # one input image file
    allow_input_urls: bool = False  # fetch input images from http(s) URLs (a server-side request forgery risk)
    # authentication (README: "Authentication")
    auth: str = "none"  # none, or a comma list of api_key, jwt, pam, idp; with "optional" guests may read
    allow_unauthenticated: bool = False  # serve a non-loopback address with auth = none
    api_key_file: Path | None = None  # keys for automation, lines name:role:key
    access_token_seconds: Annotated[int, Meta(ge=60, le=86400)] = 900
    refresh_token_seconds: Annotated[int, Meta(ge=300)] = 30 * 86400
    idp_public_key_file: Path | None = None  # verify an identity provider's tokens (RS256/ES256) with this key
    idp_issuer: str = ""
    idp_audience: str = ""
    idp_role_claim: str = "role"  # a dotted path, e.g. realm_access.roles for Keycloak
    pam_service: str = "sdrest"
    pam_allowed_groups: str = ""  # comma list; empty: any system account may log in as a user
    pam_admin_groups: str = ""  # comma list of groups whose members are admins
    cors_origins: str = ""  # comma list of origins allowed to call the API from a browser; never "*"
    # operations (README: "Metrics and webhooks")
    metrics_port: Annotated[int, Meta(ge=0, le=65535)] = 0  # >0: /metrics also served without auth on this port
    webhooks: str = ""  # comma list of URLs told about every job's end
    webhook_allow: str = ""  # comma list of host names or networks (CIDR) webhooks may reach
    # model management
    hf_token: str = ""  # Hugging Face token for gated repos (else HF_TOKEN); never logged
    allow_download_urls: bool = False  # POST /models/download with a plain https URL

    @property
    def models_path(self) -> Path:
        return self.models_dir if self.models_dir is not None else self.data_dir / "models"


FIELDS = Settings.__struct_fields__


def _python_type(name: str) -> type:
    """The plain type a flag converts its text to (`Path` for `Path | None`)."""
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    field = next(f for f in info.fields if f.name == name)
    kind = field.type
    if isinstance(kind, msgspec.inspect.UnionType):
        kind = next(t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType))
    return {
        msgspec.inspect.IntType: int,
        msgspec.inspect.FloatType: float,
        msgspec.inspect.StrType: str,
        msgspec.inspect.BoolType: bool,
        msgspec.inspect.DictType: dict,
    }.get(type(kind), Path)


SETTING_TYPES: dict[str, type] = {name: _python_type(name) for name in FIELDS}
SETTING_HELP = {
    "models_dir": "model library",
    "data_dir": "state: caches, jobs, outputs",
    "config": "TOML config file",
    "host": "bind address",
    "port": "port",
    "log_level": "debug, info, warning or error",
}


class SettingsError(ValueError):
    """A setting has a bad value; the message names it and where it came from."""


def load_settings(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Merge defaults, the config file, `SDREST_*` variables and flags (None-valued flags are "not given")."""
    env = os.environ if env is None else env
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    from_env = {name: env[f"SDREST_{name.upper()}"] for name in FIELDS if f"SDREST_{name.upper()}" in env}
    config_path = given.get("config") or from_env.get("config")
    from_file: dict[str, Any] = {}
    if config_path:
        try:
            from_file = tomllib.loads(Path(config_path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SettingsError(f"config file {config_path}: {e}") from e
    merged: dict[str, Any] = {}
    for source, values in (("config file", from_file), ("environment", from_env), ("flags", given)):
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise SettingsError(f"unknown setting(s) in {source}: {', '.join(unknown)}")
        merged.update(values)
    for name, value in merged.items():
        # Tables come from flags and environment variables as JSON (`SDREST_ENGINE_OPTIONS='{"flash_attn": true}'`).
        if SETTING_TYPES.get(name) is dict and isinstance(value, str):
            try:
                merged[name] = json.loads(value)
            except ValueError as e:
                raise SettingsError(f"{name} must be a JSON object: {e}") from e
    try:
        # Environment values are strings: let msgspec convert them ("7860" → 7860) the way it validates the rest.
        return msgspec.convert(merged, Settings, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as e:
        raise SettingsError(f"invalid setting: {e}") from e


def _decode_path(kind: type, value: Any) -> Any:
    if kind is Path:
        return Path(value).expanduser()
    raise NotImplementedError
