"""Typed configuration from ``TESSERA_*`` environment variables (pydantic-settings).

Every setting is named as in the Helm chart's values, so a value set in the chart and one exported in a shell
are the same thing. ``load`` validates at start and turns pydantic's report into one readable error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError


class ConfigError(Exception):
    """Raised at start when the environment does not describe a valid configuration."""


class ServerSettings(BaseSettings):
    """What every gRPC server shares."""

    model_config = SettingsConfigDict(env_prefix="TESSERA_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free one")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus /metrics port; 0 disables")
    max_receive_message_bytes: int = Field(64 * 1024 * 1024 + 65536, ge=1024)
    max_send_message_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    auth_token: str | None = Field(None, description="bearer token required on every call except health")
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    drain_delay_s: float = Field(1.0, ge=0, description="NOT_SERVING is reported this long before the port closes")
    grace_s: float = Field(10.0, ge=0, description="in-flight calls get this long to finish on SIGTERM")
    log_level: str = "INFO"
    log_json: bool = True
    nats_url: str = "nats://127.0.0.1:4222"
    triton_url: str = "127.0.0.1:8001"
    triton_timeout_s: float = Field(30.0, gt=0)
    media_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="folders a client may name files under; comma-separated"
    )
    trace_dir: Path | None = Field(
        None, description="append finished spans as JSON lines to a file per process in this folder; unset: off"
    )

    @field_validator("media_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        return split_list(value)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TESSERA_TLS_CERT_FILE and TESSERA_TLS_KEY_FILE must be set together")
        for path in (self.tls_cert_file, self.tls_key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file {path} does not exist")
        return self


def split_list(value: object) -> object:
    """Comma-separated environment values become lists (``a,b`` rather than JSON)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


S = TypeVar("S", bound=BaseSettings)


def load(settings_cls: type[S], **overrides: object) -> S:
    """Build settings from the environment, or raise ConfigError listing every bad variable."""
    try:
        return settings_cls(**overrides)  # type: ignore[arg-type]
    except SettingsError as exc:
        raise ConfigError(f"invalid configuration for {settings_cls.__name__}: {exc}") from None
    except ValidationError as exc:
        prefix = str(settings_cls.model_config.get("env_prefix", ""))
        lines = []
        for err in exc.errors():
            loc = "_".join(str(part) for part in err["loc"]).upper()
            name = f"{prefix}{loc}" if loc else settings_cls.__name__
            got = err.get("input")
            shown = "" if isinstance(got, dict) or got is None else f" (got {str(got)[:80]!r})"
            lines.append(f"  {name}: {err['msg']}{shown}")
        raise ConfigError(f"invalid configuration for {settings_cls.__name__}:\n" + "\n".join(lines)) from None
