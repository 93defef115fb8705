"""Warm null-flush Apertium pipelines against the real Debian pairs."""

from __future__ import annotations

import pytest

from tessera.translation.apertium import PipelinePool, TranslationError, escape, null_flush_command, unescape


def test_escaping_round_trip() -> None:
    text = "a [b] c^d $e /f @g <h> {i} \\\\j"
    assert unescape(escape(text) + "[][\\n]") == " ".join(text.split())


def test_mode_becomes_null_flush_stages() -> None:
    stages = null_flush_command("lt-proc 'x.bin' | apertium-tagger -g $2 'y.prob' | lt-proc $1 'z.bin'")
    assert stages == [
        ["lt-proc", "-z", "x.bin"],
        ["apertium-tagger", "-z", "-g", "y.prob"],
        ["lt-proc", "-z", "-n", "z.bin"],
    ]


def test_warm_pipeline_translates_repeatedly_without_restarts() -> None:
    pool = PipelinePool([("en", "es"), ("en", "ca")])
    try:
        assert pool.translate("en", "es", "Good morning.").lower().startswith("buenos d")
        pids = [p.pid for p in pool._pipes[("en", "es")]._procs]
        for _ in range(10):
            out = pool.translate("en", "es", "The red car is here [really].")
        assert [p.pid for p in pool._pipes[("en", "es")]._procs] == pids  # the same warm processes throughout
        assert "coche rojo" in out or "carro rojo" in out
        assert "[really]" not in out and "[" in out  # brackets survive as text, not as format blocks
        assert pool.fallbacks == 0
        assert pool.translate("en", "ca", "Good morning.").lower().startswith("bon dia")
        with pytest.raises(TranslationError):
            pool.translate("en", "de", "Hello")
    finally:
        pool.close()


def test_missing_pair_refused_at_start() -> None:
    with pytest.raises(TranslationError, match="not installed"):
        PipelinePool([("en", "xx")])
