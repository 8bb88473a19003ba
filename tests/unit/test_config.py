"""Configuration: defaults, IDP_* overrides, and production refusing unsafe settings."""

import pytest

from idp.config import ConfigError, load


def test_env_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("IDP_ACCESS_TOKEN_TTL", "120")
    monkeypatch.setenv("IDP_ISSUER", "https://id.example.com/")
    cfg = load(str(tmp_path))
    assert cfg["ACCESS_TOKEN_TTL"] == 120 and cfg["ISSUER"] == "https://id.example.com"


def test_file_overrides(monkeypatch, tmp_path):
    f = tmp_path / "idp.toml"
    f.write_text('code_ttl = 30\n')
    monkeypatch.setenv("IDP_CONFIG_FILE", str(f))
    assert load(str(tmp_path))["CODE_TTL"] == 30


@pytest.mark.parametrize("overrides,reason", [
    ({}, "IDP_SECRET_KEY"),
    ({"SECRET_KEY": "short"}, "IDP_SECRET_KEY"),
    ({"SECRET_KEY": "x" * 40, "ISSUER": "http://id.example.com"}, "plain http"),
])
def test_production_refuses_unsafe_settings(tmp_path, overrides, reason):
    with pytest.raises(ConfigError, match=reason):
        load(str(tmp_path), {"ENV": "production", **overrides})


def test_production_accepts_loopback_http_and_https(tmp_path):
    load(str(tmp_path), {"ENV": "production", "SECRET_KEY": "x" * 40, "ISSUER": "http://127.0.0.1:8000"})
    load(str(tmp_path), {"ENV": "production", "SECRET_KEY": "x" * 40, "ISSUER": "https://id.example.com"})


@pytest.mark.parametrize("issuer", ["ftp://x", "https://id.example.com?x=1", "not a url"])
def test_bad_issuer(tmp_path, issuer):
    with pytest.raises(ConfigError):
        load(str(tmp_path), {"ISSUER": issuer})
