"""Subjects, stream and consumers of the translation cascade on NATS JetStream, and the language table.

tessera.translation.<conference>.audio        gateway -> ASR        (SegmentAudio)
tessera.translation.<conference>.transcript   ASR -> MT, gateway    (SegmentText, source language)
tessera.translation.<conference>.text.<lang>  MT -> TTS, gateway    (SegmentText, one per target language)
tessera.translation.<conference>.speech.<lang> TTS -> gateway       (SegmentSpeech)
"""

from __future__ import annotations

from dataclasses import dataclass

from tessera.runtime.bus import ConsumerSpec, StreamSpec
from tessera.runtime.inference import TritonClient
from tessera.translation.languages import LanguageSupport

PREFIX = "tessera.translation"
STREAM = StreamSpec("TRANSLATION", (f"{PREFIX}.>",), max_age_s=3600.0, duplicate_window_s=300.0)
DEAD_LETTER = f"{PREFIX}.dead"
MODELS = ("asr", "mt", "tts")


def subject(conference_id: str, stage: str) -> str:
    return f"{PREFIX}.{conference_id}.{stage}"


@dataclass(frozen=True)
class SubjectParts:
    """A cascade subject taken apart: ``language`` is empty for the language-less stages (audio, transcript)."""

    conference_id: str
    stage: str
    language: str = ""


def parse_subject(name: str) -> SubjectParts | None:
    """The parts of ``tessera.translation.<conference>.<stage>[.<lang>]``; None for anything else."""
    prefix = f"{PREFIX}."
    if not name.startswith(prefix):
        return None
    parts = name[len(prefix) :].split(".")
    if len(parts) == 2 and all(parts):
        return SubjectParts(parts[0], parts[1])
    if len(parts) == 3 and all(parts):
        return SubjectParts(parts[0], parts[1], parts[2])
    return None


def consumer(stage: str, filter_subject: str, ack_wait_s: float = 15.0) -> ConsumerSpec:
    return ConsumerSpec(
        stream=STREAM.name,
        durable=f"translation_{stage}",
        filter_subject=filter_subject,
        ack_wait_s=ack_wait_s,
        max_deliver=5,
        dead_letter_subject=f"{DEAD_LETTER}.{stage}",
    )


CONSUMERS = {
    "asr": consumer("asr", f"{PREFIX}.*.audio"),
    "mt": consumer("mt", f"{PREFIX}.*.transcript"),
    "tts": consumer("tts", f"{PREFIX}.*.text.*"),
}


async def language_support(triton: TritonClient) -> LanguageSupport:
    """What the deployed models declare in their config parameters."""
    asr, mt, tts = [await triton.contract(name) for name in MODELS]
    return LanguageSupport.parse(
        asr.parameters.get("languages", ""), mt.parameters.get("pairs", ""), tts.parameters.get("languages", "")
    )
