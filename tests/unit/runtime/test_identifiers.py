"""The one id rule (runtime.identifiers) and the bounds on what errors echo (runtime.echo, runtime.errors)."""

from __future__ import annotations

import pytest

from tessera.runtime.echo import ECHO_CHARS, shown
from tessera.runtime.errors import FIELD_CHARS, MESSAGE_CHARS, InvalidArgument, NotFound, to_status
from tessera.runtime.identifiers import check_display_name, check_id, is_valid_id


@pytest.mark.parametrize("value", ["a", "room-1", "0abc", "x" * 64, "a-b-c-9"])
def test_valid_ids(value: str) -> None:
    assert is_valid_id(value)
    assert check_id(value, "room_id") == value


@pytest.mark.parametrize(
    "value",
    ["../x", "a b", "a\x00b", "*", ">", "a.b", "50%", "café", "Room", "-lead", "x" * 65, "room\n", "a/b", "a_b"],
)
def test_hostile_ids_are_invalid_argument_naming_the_field(value: str) -> None:
    assert not is_valid_id(value)
    with pytest.raises(InvalidArgument) as caught:
        check_id(value, "join.conference_id")
    assert caught.value.field == "join.conference_id"
    assert "\x00" not in caught.value.message and "\n" not in caught.value.message, "control characters escaped"


def test_empty_id_says_so() -> None:
    with pytest.raises(InvalidArgument, match="must not be empty") as caught:
        check_id("", "room_id")
    assert caught.value.field == "room_id"


def test_a_huge_id_is_echoed_bounded() -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_id("a" * 100_000, "room_id")
    assert len(caught.value.message) < ECHO_CHARS + 80
    assert "…" in caught.value.message
    assert len(shown("é" * 1000)) == ECHO_CHARS


def test_every_error_is_bounded_whatever_its_raiser_wrote() -> None:
    error = NotFound("no room " + "z" * 200_000, field="f" * 10_000)
    assert len(error.message) == MESSAGE_CHARS and error.message.endswith("…")
    assert error.field is not None and len(error.field) == FIELD_CHARS
    status = to_status(error)
    assert len(status.SerializeToString()) < 4 * (MESSAGE_CHARS + FIELD_CHARS)
    assert str(error) == error.message


def test_display_names_are_bounded_text_without_control_characters() -> None:
    assert check_display_name("Salle de réunion 3 — 東京", "display_name") == "Salle de réunion 3 — 東京"
    assert check_display_name("", "display_name") == ""
    assert check_display_name("team \U0001f469\u200d\U0001f4bb", "display_name")  # an emoji joined by ZWJ
    for bad in ("x" * 201, "a\x00b", "line\nbreak", "del\x7f"):
        with pytest.raises(InvalidArgument) as caught:
            check_display_name(bad, "display_name")
        assert caught.value.field == "display_name" and len(str(caught.value)) < 200
