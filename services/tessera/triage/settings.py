"""``TESSERA_TRIAGE_*``: settings of the triage service."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TriageSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TESSERA_TRIAGE_", extra="ignore")

    max_images: int = Field(4, ge=1, le=16)  # per Assess request
    max_image_bytes: int = Field(32 * 1024 * 1024, ge=1024)  # per image, encoded
    max_pixels: int = Field(40_000_000, ge=65_536)  # per image, width * height, read from the header before decoding
    min_side_px: int = Field(128, ge=32)  # a smaller image cannot show microaneurysms
    max_clinical_text_bytes: int = Field(4096, ge=0)
    # The served models' own operating points (from MODEL_INFO) unless set here: confidence below which a decision
    # is referred, and in-distribution probability below which an image is referred as not a fundus.
    refer_threshold: float | None = Field(None, ge=0, le=1)
    ood_threshold: float | None = Field(None, ge=0, le=1)
    audit_max_age_days: float = Field(2557, gt=0)  # seven years of assessments in the audit stream
    audit_storage: str = Field("file", pattern="^(file|memory)$")
    models_ready_timeout_s: float = Field(600.0, gt=0)
