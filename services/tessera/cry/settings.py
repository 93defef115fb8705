"""``TESSERA_CRY_*``: settings of the cry service."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TESSERA_CRY_", extra="ignore")

    max_clip_s: float = Field(120.0, gt=0, le=3600)  # Classify: longer clips are refused (RESOURCE_EXHAUSTED)
    max_inline_bytes: int = Field(32 * 1024 * 1024, ge=1024)  # Classify file.inline_data
    max_segments: int = Field(400, ge=1)  # per clip; a clip with more sound events is refused
    cry_threshold: float = Field(0.5, gt=0, lt=1)  # cry probability at or above which a segment is a cry
    # The served model's energy threshold (from MODEL_INFO) unless set here.
    energy_threshold: float | None = None
    stream_idle_timeout_s: float = Field(30.0, gt=0)  # StreamClassify: a stream quiet this long is ended
    max_stream_s: float = Field(4 * 3600.0, gt=0)  # StreamClassify: audio per stream
    triton_concurrency: int = Field(4, ge=1, le=64)  # segments of one clip classified at once
    models_ready_timeout_s: float = Field(600.0, gt=0)
