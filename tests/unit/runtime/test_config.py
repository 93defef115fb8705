from __future__ import annotations

from pathlib import Path

import pytest

from tessera.runtime.config import ConfigError, ServerSettings, load


def test_reads_tessera_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TESSERA_PORT", "6000")
    monkeypatch.setenv("TESSERA_MEDIA_ROOTS", f"{tmp_path},/srv/media")
    monkeypatch.setenv("TESSERA_LOG_LEVEL", "debug")
    settings = load(ServerSettings)
    assert settings.port == 6000
    assert settings.media_roots == [tmp_path, Path("/srv/media")]
    assert settings.log_level == "DEBUG"


def test_errors_name_every_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_PORT", "not-a-port")
    monkeypatch.setenv("TESSERA_GRACE_S", "-3")
    monkeypatch.setenv("TESSERA_LOG_LEVEL", "loud")
    with pytest.raises(ConfigError) as caught:
        load(ServerSettings)
    text = str(caught.value)
    assert "TESSERA_PORT" in text and "'not-a-port'" in text
    assert "TESSERA_GRACE_S" in text and "greater than or equal to 0" in text
    assert "TESSERA_LOG_LEVEL" in text
    assert "Traceback" not in text and "pydantic" not in text.lower().replace("pydantic-settings", "")


def test_tls_files_must_come_in_pairs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    monkeypatch.setenv("TESSERA_TLS_CERT_FILE", str(cert))
    with pytest.raises(ConfigError, match="must be set together"):
        load(ServerSettings)
