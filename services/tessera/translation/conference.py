"""A conference's state: participants, their languages, the floor, and segment numbering.

Per spoken segment the work is planned here: one ASR in the speaker's language, then MT and TTS once for every
*distinct* other language among the listeners - 1 + 2(L-1) model calls whatever the number of participants N.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from tessera.runtime.echo import shown
from tessera.translation.floor import Floor
from tessera.translation.languages import LanguageSupport, base_language


class JoinRefused(Exception):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class State(enum.Enum):
    ACTIVE = "active"
    ENDED = "ended"


@dataclass
class Participant:
    participant_id: str
    display_name: str
    language_tag: str  # as given
    language: str  # base language used for routing


@dataclass(frozen=True)
class SegmentPlan:
    seq: int
    segment_id: str
    speaker_id: str
    language: str
    targets: tuple[str, ...]  # distinct listener languages other than the speaker's


def model_calls_per_segment(languages: int) -> int:
    """1 ASR + (L-1) x (MT + TTS)."""
    return 1 + 2 * max(0, languages - 1)


@dataclass
class Conference:
    conference_id: str
    display_name: str
    max_hold_s: float
    created_unix_ms: int
    support: LanguageSupport
    participants: dict[str, Participant] = field(default_factory=dict)
    state: State = State.ACTIVE
    next_seq: int = 1
    last_activity_ms: int = 0  # the last join, leave or segment (Unix ms); what idle expiry counts from
    end_ms: int = 0  # when it was ended (Unix ms); 0 while active
    floor: Floor = field(init=False)

    def __post_init__(self) -> None:
        self.floor = Floor(self.max_hold_s)
        self.last_activity_ms = self.last_activity_ms or self.created_unix_ms

    def end(self, now_ms: int) -> None:
        if self.state is State.ACTIVE:
            self.state, self.end_ms = State.ENDED, now_ms

    def join(self, participant_id: str, display_name: str, language_tag: str) -> Participant:
        if self.state is not State.ACTIVE:
            raise JoinRefused("the conference has ended", "join.conference_id")
        if not participant_id or len(participant_id) > 64:
            raise JoinRefused("participant_id must be 1-64 characters", "join.participant_id")
        if participant_id in self.participants:
            raise JoinRefused(f"{shown(participant_id)} is already connected", "join.participant_id")
        try:
            language = base_language(language_tag)
        except ValueError as exc:
            raise JoinRefused(str(exc), "join.language") from None
        if not self.support.can_hear(language):
            supported = ", ".join(self.support.participant_languages())
            raise JoinRefused(
                f"no model serves {shown(language_tag)}; supported languages: {supported}", "join.language"
            )
        participant = Participant(participant_id, display_name or participant_id, language_tag, language)
        self.participants[participant_id] = participant
        return participant

    def leave(self, participant_id: str) -> Participant | None:
        return self.participants.pop(participant_id, None)

    def languages(self) -> list[str]:
        return sorted({p.language for p in self.participants.values()})

    def plan_segment(self, speaker_id: str) -> SegmentPlan:
        speaker = self.participants[speaker_id]
        seq = self.next_seq
        self.next_seq += 1
        targets = tuple(lang for lang in self.languages() if lang != speaker.language)
        return SegmentPlan(seq, self.segment_id(seq), speaker_id, speaker.language, targets)

    def segment_id(self, seq: int) -> str:
        """``<conference>-<creation, hex ms>-<seq>``: unique to this conference's lifetime, so that one created again
        under the same id (after it expired) is not taken for a repeat by JetStream's duplicate window."""
        return f"{self.conference_id}-{self.created_unix_ms:x}-{seq:06d}"
