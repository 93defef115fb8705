"""Translation cascade subjects round-trip through ``cascade.subject`` and ``cascade.parse_subject``."""

from __future__ import annotations

from tessera.translation import cascade


def test_parse_subject_round_trips_every_stage() -> None:
    assert cascade.parse_subject(cascade.subject("conf-1", "audio")) == cascade.SubjectParts("conf-1", "audio")
    transcript = cascade.subject("conf-1", "transcript")
    assert cascade.parse_subject(transcript) == cascade.SubjectParts("conf-1", "transcript")
    assert cascade.parse_subject(cascade.subject("conf-1", "text.es")) == cascade.SubjectParts("conf-1", "text", "es")
    assert cascade.parse_subject(cascade.subject("c", "speech.pt")) == cascade.SubjectParts("c", "speech", "pt")


def test_parse_subject_refuses_other_subjects() -> None:
    assert cascade.parse_subject("tessera.monitoring.room.frames") is None
    assert cascade.parse_subject("tessera.translation.only") is None
    assert cascade.parse_subject("tessera.translation.c.text.es.extra") is None
    assert cascade.parse_subject("tessera.translation..audio") is None
    assert cascade.parse_subject("") is None
