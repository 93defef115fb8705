from __future__ import annotations

import pytest

from tessera.translation.conference import Conference, JoinRefused, model_calls_per_segment
from tessera.translation.languages import LanguageSupport, base_language

SUPPORT = LanguageSupport.parse("en", "en-es,es-en,en-ca,ca-en,es-pt", "en,es,ca,pt,fr")


def test_base_language() -> None:
    assert base_language("es-ES") == "es" and base_language("CA") == "ca" and base_language("pt_BR") == "pt"
    with pytest.raises(ValueError):
        base_language("12")


def test_routes_direct_and_through_pivot() -> None:
    assert SUPPORT.route("en", "es") == [("en", "es")]
    assert SUPPORT.route("es", "ca") == [("es", "en"), ("en", "ca")]
    assert SUPPORT.route("en", "en") == []
    assert SUPPORT.route("pt", "en") is None


def test_who_can_hear_and_speak() -> None:
    # fr has a voice but no MT from English; pt is reachable only from es, which has no ASR.
    assert SUPPORT.participant_languages() == ["ca", "en", "es"]
    assert SUPPORT.can_speak("en") and not SUPPORT.can_speak("es")


def test_join_and_segment_plan() -> None:
    conf = Conference("c1", "demo", 60, 0, SUPPORT)
    conf.join("a", "Alice", "en")
    conf.join("b", "Bruno", "es-ES")
    conf.join("c", "Carme", "ca")
    conf.join("d", "Dani", "ca")
    plan = conf.plan_segment("a")
    assert (plan.seq, plan.segment_id, plan.targets) == (1, "c1-0-000001", ("ca", "es"))
    assert Conference("c1", "again", 60, 255, SUPPORT).segment_id(1) == "c1-ff-000001", "another lifetime"
    assert conf.plan_segment("a").seq == 2
    assert model_calls_per_segment(len(conf.languages())) == 5  # 1 ASR + 2 x (MT + TTS), not per listener
    with pytest.raises(JoinRefused) as refused:
        conf.join("e", "Eve", "fr")
    assert refused.value.field == "join.language" and "ca, en, es" in str(refused.value)
    with pytest.raises(JoinRefused):
        conf.join("a", "Again", "en")
