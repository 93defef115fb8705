"""Which languages a deployment serves, derived from what its ASR, MT and TTS models declare.

A participant may join in a language they can *hear*: one the ASR transcribes (listeners of the speaker's own
language get the transcript and the original voice), or one that MT reaches from an ASR language - directly or
through one pivot - and TTS can voice. Speaking needs ASR in that language; typing needs only MT.
"""

from __future__ import annotations

from dataclasses import dataclass

from tessera.runtime.echo import shown

PIVOT = "en"


def base_language(tag: str) -> str:
    """BCP-47 tag -> lower-case primary subtag: "es-ES" -> "es", "CA" -> "ca"."""
    primary = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    if not primary.isalpha() or not 2 <= len(primary) <= 3:
        raise ValueError(f"{shown(tag)} is not a BCP-47 language tag")
    return primary


@dataclass(frozen=True)
class LanguageSupport:
    asr: frozenset[str]
    mt_pairs: frozenset[tuple[str, str]]
    tts: frozenset[str]

    @classmethod
    def parse(cls, asr: str, mt_pairs: str, tts: str) -> LanguageSupport:
        """From model config parameters: "en", "en-es,es-en", "en,es"."""
        pairs = set()
        for item in mt_pairs.split(","):
            if item.strip():
                source, target = item.strip().split("-", 1)
                pairs.add((base_language(source), base_language(target)))
        return cls(
            frozenset(base_language(x) for x in asr.split(",") if x.strip()),
            frozenset(pairs),
            frozenset(base_language(x) for x in tts.split(",") if x.strip()),
        )

    def route(self, source: str, target: str) -> list[tuple[str, str]] | None:
        """MT hops from source to target: [] for the same language, one direct pair, or two through the pivot."""
        if source == target:
            return []
        if (source, target) in self.mt_pairs:
            return [(source, target)]
        if (source, PIVOT) in self.mt_pairs and (PIVOT, target) in self.mt_pairs:
            return [(source, PIVOT), (PIVOT, target)]
        return None

    def can_hear(self, language: str) -> bool:
        if language in self.asr:
            return True
        return language in self.tts and any(self.route(src, language) is not None for src in self.asr)

    def can_speak(self, language: str) -> bool:
        return language in self.asr

    def participant_languages(self) -> list[str]:
        candidates = self.asr | self.tts | {lang for pair in self.mt_pairs for lang in pair}
        return sorted(lang for lang in candidates if self.can_hear(lang))
