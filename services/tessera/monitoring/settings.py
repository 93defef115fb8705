"""``TESSERA_MONITORING_*``: settings of the monitoring gateway and its workers."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tessera.runtime.audio import DEFAULT_HOP_MS


class MonitoringSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TESSERA_MONITORING_", extra="ignore")

    # Shedding (see tessera.monitoring.shedding): per-room frame credits, waiting queue, credit timeout.
    max_in_flight_frames: int = Field(8, ge=1, le=1000)
    max_waiting_frames: int = Field(4, ge=0, le=1000)
    credit_timeout_s: float = Field(10.0, gt=0)
    # A detector drops a frame it reaches this long (ms, wall clock) after the gateway accepted it; 0 disables.
    frame_max_lag_ms: int = Field(2000, ge=0)
    # Audio analysis windows (0.982 s) end every hop_ms of stream time. av_fusion's audio tokens are consecutive
    # windows: keep the hop it was trained with (tessera.runtime.audio.DEFAULT_HOP_MS).
    audio_hop_ms: int = Field(DEFAULT_HOP_MS, ge=50, le=982)
    # Largest encoded frame published as is (bytes); larger ones are re-encoded as JPEG.
    frame_publish_max_bytes: int = Field(900_000, ge=10_000, le=1_000_000)
    # Largest encoded frame accepted (bytes); a larger one is refused on its own and the stream goes on. Must stay
    # well below the gRPC receive limit (TESSERA_MAX_RECEIVE_MESSAGE_BYTES): a message over that ends the whole
    # stream in gRPC itself, and clients still writing may see it as INTERNAL instead of RESOURCE_EXHAUSTED.
    max_frame_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    # Ingest streams: one that sends nothing for ingest_idle_timeout_s (s) is ended, freeing the room's live slot;
    # one whose first message (naming the room) does not come in ingest_first_message_timeout_s (s) likewise.
    ingest_idle_timeout_s: float = Field(30.0, gt=0, le=3600)
    ingest_first_message_timeout_s: float = Field(30.0, gt=0, le=3600)
    max_rooms: int = Field(1000, ge=1)
    # AnalyzeClip bounds.
    clip_max_duration_s: float = Field(600.0, gt=0)
    inline_max_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    max_sampling_fps: float = Field(10.0, gt=0, le=30)
    clip_cache_entries: int = Field(16, ge=0)
    # Server-side feeds: URI schemes allowed besides files under the media roots.
    feed_schemes: str = "rtsp,rtsps"
    max_feeds: int = Field(64, ge=0)
    models_ready_timeout_s: float = Field(600.0, gt=0)
    # Stage workers: messages handled at once (Triton dynamic batching merges concurrent requests).
    detector_concurrency: int = Field(4, ge=1, le=64)
    audio_concurrency: int = Field(4, ge=1, le=64)
    fusion_concurrency: int = Field(8, ge=1, le=64)
