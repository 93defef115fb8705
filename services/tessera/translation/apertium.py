"""Warm Apertium pipelines in null-flush mode: one process chain per language pair, reused for every request.

``apertium -u eng-spa`` spends ~0.2-0.3 s starting and loading its transducers for every call. Instead we read the
pair's mode file, run the same stages with ``-z`` (each stage flushes at a NUL byte) and keep the chain alive, so a
sentence costs only its translation. apertium-destxt/-retxt do not flush on NUL, so plain-text (de)formatting is done
here: escape Apertium's reserved characters and close each request with a superblank. A chain that stalls or dies
is replaced, and the request falls back to a one-shot ``apertium -u`` call so a request is never lost.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import subprocess
import threading
import time
from pathlib import Path

MODES_DIR = Path("/usr/share/apertium/modes")
_RESERVED = re.compile(r"([\\\[\]^$/@<>{}*])")
_CODES = {"en": "eng", "es": "spa", "ca": "cat", "fr": "fr", "pt": "pt"}
# Pair names differ across Apertium packages: eng-spa, fr-es, es-pt ...
_CANDIDATES = {
    ("en", "es"): ["eng-spa", "en-es"],
    ("es", "en"): ["spa-eng", "es-en"],
    ("en", "ca"): ["eng-cat", "en-ca"],
    ("ca", "en"): ["cat-eng", "ca-en"],
    ("fr", "es"): ["fr-es", "fra-spa"],
    ("es", "fr"): ["es-fr", "spa-fra"],
    ("es", "pt"): ["es-pt", "spa-por"],
    ("pt", "es"): ["pt-es", "por-spa"],
}


class TranslationError(Exception):
    pass


def mode_name(source: str, target: str, modes_dir: Path = MODES_DIR) -> str | None:
    for name in _CANDIDATES.get((source, target), [f"{_CODES.get(source, source)}-{_CODES.get(target, target)}"]):
        if (modes_dir / f"{name}.mode").exists():
            return name
    return None


def null_flush_command(mode_text: str) -> list[list[str]]:
    """The mode's stages as argv lists, each with -z, without the text (de)formatters."""
    stages = []
    for raw in mode_text.strip().split("|"):
        words = shlex.split(raw.replace("$1", "-n").replace("$2", ""))  # as `apertium -u`: no unknown-word marks
        if not words or words[0] in ("apertium-destxt", "apertium-retxt"):
            continue
        stages.append([words[0], "-z", *words[1:]])
    return stages


def escape(text: str) -> str:
    return _RESERVED.sub(r"\\\1", " ".join(text.split()))


def unescape(text: str) -> str:
    """Drop superblanks ``[...]``, backslash escapes and stray analysis marks."""
    out: list[str] = []
    i, in_blank = 0, False
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            if not in_blank:
                out.append(text[i + 1])
            i += 2
            continue
        if char == "[" and not in_blank:
            in_blank = True
        elif char == "]" and in_blank:
            in_blank = False
        elif not in_blank and char not in "#~":
            out.append(char)
        i += 1
    return " ".join("".join(out).split())


class Pipeline:
    """One warm chain for one pair; not thread-safe (the pool serialises access)."""

    def __init__(self, mode: str, modes_dir: Path = MODES_DIR, timeout_s: float = 10.0) -> None:
        self.mode = mode
        self.timeout_s = timeout_s
        self.stages = null_flush_command((modes_dir / f"{mode}.mode").read_text())
        self._procs: list[subprocess.Popen[bytes]] = []
        self._start()

    def _start(self) -> None:
        self.close()
        upstream = None
        for argv in self.stages:
            proc = subprocess.Popen(
                argv, stdin=upstream or subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
            if upstream is not None:
                upstream.close()  # the child holds it now
            upstream = proc.stdout
            self._procs.append(proc)

    def close(self) -> None:
        for proc in self._procs:
            proc.kill()
            proc.wait()
        self._procs = []

    def translate(self, text: str) -> str:
        first, last = self._procs[0], self._procs[-1]
        assert first.stdin is not None and last.stdout is not None
        first.stdin.write(escape(text).encode() + b"[][\\n]\0")
        first.stdin.flush()
        out = b""
        deadline = time.monotonic() + self.timeout_s
        fd = last.stdout.fileno()
        while not out.endswith(b"\0"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:
                self._start()  # stalled or died: a fresh chain for the next request
                raise TranslationError(f"{self.mode} pipeline gave no answer")
            out += chunk
        return unescape(out[:-1].decode("utf-8", "replace"))


def one_shot(mode: str, text: str, timeout_s: float = 30.0) -> str:
    result = subprocess.run(
        ["apertium", "-u", mode], input=text.encode(), capture_output=True, timeout=timeout_s, check=False
    )
    if result.returncode != 0:
        raise TranslationError(f"apertium {mode} failed: {result.stderr.decode(errors='replace')[:200]}")
    return result.stdout.decode("utf-8", "replace").strip()


class PipelinePool:
    """A warm pipeline per pair (lazily started), with a lock each; falls back to one-shot calls."""

    def __init__(self, pairs: list[tuple[str, str]], modes_dir: Path = MODES_DIR) -> None:
        self.modes: dict[tuple[str, str], str] = {}
        missing = []
        for pair in pairs:
            mode = mode_name(*pair, modes_dir=modes_dir)
            if mode is None:
                missing.append("-".join(pair))
            else:
                self.modes[pair] = mode
        if missing:
            raise TranslationError(f"Apertium pairs not installed: {', '.join(missing)} (make install)")
        self._pipes: dict[tuple[str, str], Pipeline] = {}
        self._locks = {pair: threading.Lock() for pair in self.modes}
        self.modes_dir = modes_dir
        self.fallbacks = 0

    def translate(self, source: str, target: str, text: str) -> str:
        pair = (source, target)
        if pair not in self.modes:
            raise TranslationError(f"no Apertium pair {source}-{target}")
        if not text.strip():
            return ""
        with self._locks[pair]:
            try:
                if pair not in self._pipes:
                    self._pipes[pair] = Pipeline(self.modes[pair], self.modes_dir)
                return self._pipes[pair].translate(text)
            except (TranslationError, OSError, BrokenPipeError):
                self._pipes.pop(pair, None)
                self.fallbacks += 1
                return one_shot(self.modes[pair], text)

    def warm(self) -> None:
        """Start every pair's chain now (a model's load time), so the first real sentence pays no start-up."""
        for source, target in self.modes:
            self.translate(source, target, "Hello.")

    def close(self) -> None:
        for pipe in self._pipes.values():
            pipe.close()
        self._pipes.clear()
