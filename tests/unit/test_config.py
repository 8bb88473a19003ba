"""Configuration: defaults, IDP_* overrides, and production refusing unsafe settings."""

import pytest

from idp.config import ConfigError, load

# What production needs besides a secret and Redis: PostgreSQL, and keys in a fixed place
PG = {"DATABASE_URL": "postgresql+psycopg://idp@db.internal/idp", "KEYS_DIR": "/var/lib/idp/keys"}
PRODUCTION = {"ENV": "production", "SECRET_KEY": "x" * 40, "REDIS_URL": "redis://cache:6379/0", **PG}


def test_env_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("IDP_ACCESS_TOKEN_TTL", "120")
    monkeypatch.setenv("IDP_ISSUER", "https://id.example.com/")
    cfg = load(str(tmp_path))
    assert cfg["ACCESS_TOKEN_TTL"] == 120 and cfg["ISSUER"] == "https://id.example.com"


def test_a_setting_can_come_from_a_file_named_by_IDP_KEY_FILE(monkeypatch, tmp_path):
    """Docker and Kubernetes secrets are files: the value is the file's text, its final
    newline dropped, read like an environment variable."""
    (tmp_path / "secret").write_text("s" * 40 + "\n")
    (tmp_path / "ttl").write_text("120")
    monkeypatch.setenv("IDP_SECRET_KEY_FILE", str(tmp_path / "secret"))
    monkeypatch.setenv("IDP_ACCESS_TOKEN_TTL_FILE", str(tmp_path / "ttl"))
    monkeypatch.setenv("IDP_CLIENTS_FILE", "my/clients.toml")  # a setting whose name ends in _FILE
    cfg = load(str(tmp_path), {"ENV": "production", "REDIS_URL": "redis://127.0.0.1:6379/0", **PG})
    assert cfg["SECRET_KEY"] == "s" * 40 and cfg["ACCESS_TOKEN_TTL"] == 120
    assert cfg["CLIENTS_FILE"] == "my/clients.toml"


def test_a_setting_from_both_a_variable_and_a_file_or_an_unreadable_file_is_refused(monkeypatch, tmp_path):
    (tmp_path / "secret").write_text("s" * 40)
    monkeypatch.setenv("IDP_SECRET_KEY_FILE", str(tmp_path / "secret"))
    monkeypatch.setenv("IDP_SECRET_KEY", "t" * 40)
    with pytest.raises(ConfigError, match="both IDP_SECRET_KEY and IDP_SECRET_KEY_FILE are set"):
        load(str(tmp_path))
    monkeypatch.delenv("IDP_SECRET_KEY")
    monkeypatch.setenv("IDP_SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"IDP_SECRET_KEY_FILE: cannot read .*missing.* \(FileNotFoundError\)"):
        load(str(tmp_path))


def test_file_overrides(monkeypatch, tmp_path):
    f = tmp_path / "idp.toml"
    f.write_text('code_ttl = 30\n')
    monkeypatch.setenv("IDP_CONFIG_FILE", str(f))
    assert load(str(tmp_path))["CODE_TTL"] == 30


@pytest.mark.parametrize("overrides,reason", [
    ({}, "IDP_SECRET_KEY"),
    ({"SECRET_KEY": "short"}, "IDP_SECRET_KEY"),
    ({"SECRET_KEY": "x" * 40, "ISSUER": "http://id.example.com"}, "plain http"),
    # A new key must be in every cached copy of the JWKS before it signs, with a margin.
    ({"SECRET_KEY": "x" * 40, "REDIS_URL": "redis://cache:6379/0", "KEY_PUBLISH_AHEAD": 60},
     "KEY_PUBLISH_AHEAD of at least 600 s"),
    ({"SECRET_KEY": "x" * 40, "REDIS_URL": "redis://cache:6379/0", "KEY_PUBLISH_AHEAD": 300},
     "KEY_PUBLISH_AHEAD of at least 600 s"),
])
def test_production_refuses_unsafe_settings(tmp_path, overrides, reason):
    with pytest.raises(ConfigError, match=reason):
        load(str(tmp_path), {"ENV": "production", **overrides})


def test_a_config_file_named_but_missing_is_refused_in_production(monkeypatch, tmp_path):
    """A mistyped IDP_CONFIG_FILE dropped every setting of the file without a word."""
    monkeypatch.setenv("IDP_CONFIG_FILE", str(tmp_path / "idp.tmol"))
    with pytest.raises(ConfigError, match="which does not exist"):
        load(str(tmp_path), PRODUCTION)
    load(str(tmp_path), {})  # development: an absent file is no file
    monkeypatch.setenv("IDP_CONFIG_FILE", str(tmp_path))  # a directory
    with pytest.raises(ConfigError, match="is not a file"):
        load(str(tmp_path), {})


def test_production_needs_an_absolute_keys_dir_with_keys_in_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="production needs an absolute KEYS_DIR"):
        load(str(tmp_path), {**PRODUCTION, "KEYS_DIR": "keys"})
    load(str(tmp_path), {**PRODUCTION, "KEYS_DIR": "keys", "KEYS_STORE": "database"})  # not read from there


def test_production_accepts_loopback_http_and_https(tmp_path):
    redis = {"REDIS_URL": "redis://127.0.0.1:6379/0", **PG}
    load(str(tmp_path), {"ENV": "production", "SECRET_KEY": "x" * 40, "ISSUER": "http://127.0.0.1:8000", **redis})
    load(str(tmp_path), {"ENV": "production", "SECRET_KEY": "x" * 40, "ISSUER": "https://id.example.com", **redis})


@pytest.mark.parametrize("url", ["memory://", "MEMORY://", "http://cache:6379"])
def test_production_refuses_a_store_of_its_own_per_process(tmp_path, url):
    """The `idp` command would revoke in its own store, not the servers'."""
    with pytest.raises(ConfigError, match="production needs IDP_REDIS_URL"):
        load(str(tmp_path), {"ENV": "production", "SECRET_KEY": "x" * 40, "REDIS_URL": url, **PG})
    load(str(tmp_path), {"ENV": "production", "SECRET_KEY": "x" * 40, "REDIS_URL": "REDIS://cache:6379/0", **PG})


@pytest.mark.parametrize("overrides,reason", [
    ({"DATABASE_URL": "sqlite:///instance/idp.sqlite3"}, "production needs IDP_DATABASE_URL on PostgreSQL"),
    ({"DATABASE_URL": None}, "production needs IDP_DATABASE_URL on PostgreSQL"),  # the default: SQLite
    ({"ARGON2_MEMORY_KIB": 8, "ARGON2_TIME_COST": 1}, "OWASP's floor"),
    ({"ARGON2_MEMORY_KIB": 19455, "ARGON2_TIME_COST": 2}, "OWASP's floor"),
    ({"ARGON2_MEMORY_KIB": 19456 * 2, "ARGON2_TIME_COST": 1}, "OWASP's floor"),  # one pass needs 46 MiB
    ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN of at least 16 characters"),
    ({"DATABASE_URL": "postgres://idp@db/idp"}, "through psycopg"),  # SQLAlchemy 2 loads no such name
    ({"DATABASE_URL": "postgresql://idp@db/idp"}, "through psycopg"),  # psycopg2's, not installed
])
def test_production_refuses_a_shared_nothing_database_weak_hashes_and_a_guessable_metrics_token(
        tmp_path, overrides, reason):
    config = {**PRODUCTION, **overrides}
    with pytest.raises(ConfigError, match=reason):
        load(str(tmp_path), {k: v for k, v in config.items() if v is not None})


@pytest.mark.parametrize("key,ceiling", [("CODE_TTL", 600), ("ACCESS_TOKEN_TTL", 86400), ("ID_TOKEN_TTL", 86400)])
def test_production_caps_the_lifetime_of_codes_and_tokens(tmp_path, key, ceiling):
    """A digit too many (60000 for 600) would leave codes or bearer tokens alive for days."""
    assert load(str(tmp_path), {**PRODUCTION, key: ceiling})[key] == ceiling
    with pytest.raises(ConfigError, match=f"production allows {key} of at most {ceiling} s"):
        load(str(tmp_path), {**PRODUCTION, key: ceiling + 1})
    assert load(str(tmp_path), {key: ceiling * 100})[key] == ceiling * 100  # development: as written


@pytest.mark.parametrize("memory,passes", [(47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5), (7168, 9)])
def test_production_takes_any_of_owasps_argon2id_settings(tmp_path, memory, passes):
    load(str(tmp_path), {**PRODUCTION, "ARGON2_MEMORY_KIB": memory, "ARGON2_TIME_COST": passes})


def test_production_never_runs_in_flasks_debug_mode(tmp_path, monkeypatch):
    from idp import create_app

    monkeypatch.setenv("FLASK_DEBUG", "1")
    monkeypatch.setenv("IDP_INSTANCE_PATH", str(tmp_path))
    keys = {"KEYS_DIR": str(tmp_path / "keys"), "SECRET_KEY": "x" * 40}
    assert create_app({**PRODUCTION, **keys}).debug is False
    assert create_app({**keys, "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}).debug is True


@pytest.mark.parametrize("env", ["Production", "prod", ""])
def test_env_is_development_or_production(tmp_path, env):
    """A misspelt production would skip every production check."""
    with pytest.raises(ConfigError, match="ENV must be development or production"):
        load(str(tmp_path), {"ENV": env})


def test_a_database_password_with_braces_is_kept_as_it_is(tmp_path):
    url = "postgresql+psycopg://idp:Xy{SeCrEt}9@db/idp"
    assert load(str(tmp_path), {"DATABASE_URL": url})["DATABASE_URL"] == url
    assert load(str(tmp_path))["DATABASE_URL"] == f"sqlite:///{tmp_path}/idp.sqlite3"


@pytest.mark.parametrize("issuer", [
    "ftp://x", "https://id.example.com?x=1", "not a url",
    # One spelling: cookies, HSTS and discovery judge the issuer by its "https://" prefix, and
    # relying parties compare it as a string.
    "HTTPS://id.example.com", "https://ID.example.com",
    # Every route is at the root: discovery would not be where RFC 8414 §3.1 puts it.
    "https://id.example.com/idp",
])
def test_bad_issuer(tmp_path, issuer):
    with pytest.raises(ConfigError):
        load(str(tmp_path), {"ISSUER": issuer})


@pytest.mark.parametrize("overrides,reason", [
    ({"ISSUER": "https://[::1"}, "ISSUER is not a URL"),
    ({"ISSUER": "https://id.example.com:99999"}, "ISSUER is not a URL"),
    ({"ISSUER": "https://id.example.com:abc"}, "ISSUER is not a URL"),
    ({"REDIS_URL": "redis://:hunter2-pw@host:abc/0"}, "REDIS_URL is not a Redis URL: its port is not a number"),
    ({"REDIS_URL": "redis://:hunter2-pw@[::1"}, "REDIS_URL is not a Redis URL: its host is an unclosed IPv6"),
    ({"DATABASE_URL": "postgresql+psycopg://idp:hunter2-pw@db:abc/idp"},
     "DATABASE_URL is not a database URL .*: its port is not a number"),
    ({"DATABASE_URL": "hunter2-pw"}, "DATABASE_URL is not a database URL .*: it cannot be parsed"),
])
def test_a_url_that_does_not_parse_is_refused_at_start_without_its_password(tmp_path, overrides, reason):
    """Else every worker failed at its start (and was respawned, over and over), or discovery
    advertised endpoints at a port nobody can reach."""
    with pytest.raises(ConfigError, match=reason) as refused:
        load(str(tmp_path), overrides)
    assert "hunter2-pw" not in str(refused.value)


@pytest.mark.parametrize("overrides,reason", [
    ({"PRUNE_INTERVAL": 0}, "PRUNE_INTERVAL must be a whole number of seconds"),
    ({"LOGOUT_RETRY_INTERVAL": "300"}, "LOGOUT_RETRY_INTERVAL must be"),
    ({"LOGOUT_RETRY_INTERVAL": True}, "LOGOUT_RETRY_INTERVAL must be"),
    ({"PRUNE_GRACE_DAYS": -1}, "PRUNE_GRACE_DAYS must be"),
    ({"MAINTENANCE": "yes"}, "MAINTENANCE must be true or false"),
    ({"KEY_ROTATION_DAYS": 1}, "KEY_ROTATION_DAYS must be longer than KEY_PUBLISH_AHEAD"),
    ({"KEY_ROTATION_DAYS": -1}, "KEY_ROTATION_DAYS must be a whole number of days"),
    ({"KEY_CHECK_INTERVAL": 0}, "KEY_CHECK_INTERVAL must be"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be text or json"),
    ({"EVENT_RETENTION_DAYS": -5}, "EVENT_RETENTION_DAYS must be"),
])
def test_maintenance_settings_are_checked(tmp_path, overrides, reason):
    with pytest.raises(ConfigError, match=reason):
        load(str(tmp_path), overrides)


@pytest.mark.parametrize("overrides,reason", [
    ({"KEY_PUBLISH_AHEAD": "1d"}, "KEY_PUBLISH_AHEAD must be a whole number of seconds"),
    ({"ID_TOKEN_TTL": "abc"}, "ID_TOKEN_TTL must be a whole number of seconds"),
    ({"ACCESS_TOKEN_TTL": 0}, "ACCESS_TOKEN_TTL must be"),
    ({"DATABASE_CONNECT_TIMEOUT": "x"}, "DATABASE_CONNECT_TIMEOUT must be"),
    ({"BACKCHANNEL_ATTEMPTS": "x"}, "BACKCHANNEL_ATTEMPTS must be"),
    ({"BACKCHANNEL_TIMEOUT": 0}, "BACKCHANNEL_TIMEOUT must be"),
    ({"PRUNE_GRACE_DAYS": 1000000}, "PRUNE_GRACE_DAYS must be a whole number of days from 0 to 3650"),
    ({"SESSION_TTL": 10**12}, "SESSION_TTL must be"),
    ({"ARGON2_MEMORY_KIB": 4}, "ARGON2_MEMORY_KIB must be"),
    ({"BACKCHANNEL_ATTEMPTS": 40}, "BACKCHANNEL_ATTEMPTS must be a whole number of tries from 1 to 10"),
    ({"SECRET_KEY": 12345678901234567890123456789012345}, "SECRET_KEY must be text"),
])
def test_settings_that_would_fail_later_are_refused_at_start(tmp_path, overrides, reason):
    """Each of these gave a traceback later: at a request, an `idp` command or a maintenance run."""
    with pytest.raises(ConfigError, match=reason):
        load(str(tmp_path), overrides)


def test_a_job_can_be_made_to_run_once_a_lifetime(tmp_path):
    """The two-process e2e test sets 10**9 so each job runs once: an interval only divides time."""
    config = load(str(tmp_path), {k: 10**9 for k in ("LOGOUT_RETRY_INTERVAL", "PRUNE_INTERVAL", "KEY_CHECK_INTERVAL")})
    assert config["PRUNE_INTERVAL"] == 10**9


def test_a_text_setting_from_the_environment_stays_text(monkeypatch, tmp_path):
    """An all-digit secret is not a number: it must reach the app as the text it was."""
    monkeypatch.setenv("IDP_SECRET_KEY", "12345678901234567890123456789012345")
    monkeypatch.setenv("IDP_ACCESS_TOKEN_TTL", "300")
    config = load(str(tmp_path))
    assert config["SECRET_KEY"] == "12345678901234567890123456789012345" and config["ACCESS_TOKEN_TTL"] == 300


def test_maintenance_can_be_left_to_cron(monkeypatch, tmp_path):
    monkeypatch.setenv("IDP_MAINTENANCE", "false")
    assert load(str(tmp_path))["MAINTENANCE"] is False


@pytest.mark.parametrize("variable,expected", [
    ("IDP_PROXY_HOP", "IDP_PROXY_HOP: no such setting (did you mean PROXY_HOPS?)"),
    ("IDP_METRIC_TOKEN", "IDP_METRIC_TOKEN: no such setting (did you mean METRICS_TOKEN?)"),
    ("IDP_NOTHING_LIKE_IT", "IDP_NOTHING_LIKE_IT: no such setting;"),
    ("IDP_SESION_TTL_FILE", "IDP_SESION_TTL_FILE: no such setting"),
])
def test_an_unknown_setting_is_refused_with_the_closest_name(monkeypatch, tmp_path, variable, expected):
    """A typo would otherwise leave the default in place without a word."""
    monkeypatch.setenv(variable, "1")
    with pytest.raises(ConfigError) as refused:
        load(str(tmp_path))
    assert expected in str(refused.value)


def test_the_variables_that_are_not_settings_are_left_alone(monkeypatch, tmp_path):
    for name in ("IDP_INSTANCE_PATH", "IDP_DEMO_PASSWORD", "IDP_TEST_REDIS_URL", "IDP_CONFIG_FILE"):
        monkeypatch.setenv(name, str(tmp_path / "x"))
    cfg = load(str(tmp_path))
    assert not {"INSTANCE_PATH", "DEMO_PASSWORD", "TEST_REDIS_URL", "CONFIG_FILE"} & set(cfg)


def test_an_unknown_key_in_the_file_is_refused(monkeypatch, tmp_path):
    f = tmp_path / "idp.toml"
    f.write_text("code_tl = 30\n")
    monkeypatch.setenv("IDP_CONFIG_FILE", str(f))
    with pytest.raises(ConfigError, match=r"code_tl: no such setting \(did you mean CODE_TTL\?\)"):
        load(str(tmp_path))


@pytest.mark.parametrize("raw", ["12e3", "0", "true", "1e999"])
def test_the_metrics_token_is_text_as_written(monkeypatch, tmp_path, raw):
    monkeypatch.setenv("IDP_METRICS_TOKEN", raw)
    assert load(str(tmp_path))["METRICS_TOKEN"] == raw


@pytest.mark.parametrize("key,raw,reason", [
    ("EXTRA_SCOPES", "api:read", "EXTRA_SCOPES must be a list of names"),
    ("EXTRA_SCOPES", '["api read"]', "EXTRA_SCOPES must be a list of names"),
    ("EXTRA_SCOPES", '[1]', "EXTRA_SCOPES must be a list of names"),
    ("ACR_VALUES", "urn:x", "ACR_VALUES must be a list of names"),
    ("ACR_VALUES", "[]", "ACR_VALUES must name at least one acr value"),  # every ID token carries one
    ("RESOURCES", '["https://api.example.com"]', "RESOURCES must be a table"),
    ("RESOURCES", '{"https://api.example.com": "jwt"}', "must be a table of access_token_format, scopes and"),
    ("RESOURCES", '{"https://api.example.com": {"format": "jwt"}}', "must be a table of access_token_format"),
    ("RESOURCES", '{"https://api.example.com": {"access_token_format": "JWT"}}', "must be jwt or opaque"),
    ("RESOURCES", '{"https://api.example.com": {"scopes": "api:read"}}', "scopes must be a list of scope"),
    ("RESOURCES", '{"https://api.example.com": {"introspectors": "orders-api"}}', "introspectors must be a list"),
    ("RESOURCES", '{"https://api.example.com": {"introspectors": []}}', "introspectors must be a list of client"),
    ("RESOURCES", '{"api.example.com": {}}', "is not an absolute URI"),
    ("RESOURCES", '{"https://api.example.com#x": {}}', "is not an absolute URI"),
    ("ARGON2_PARALLELISM", "4", "ARGON2_MEMORY_KIB must be at least 8 KiB per lane"),
])
def test_lists_tables_and_argon2_lanes_are_checked_at_start(monkeypatch, tmp_path, key, raw, reason):
    """Each of these was accepted and failed later: discovery listing a scope per character,
    a 500 on every request naming the resource, every worker dying at its first hash."""
    monkeypatch.setenv(f"IDP_{key}", raw)
    if key == "ARGON2_PARALLELISM":
        monkeypatch.setenv("IDP_ARGON2_MEMORY_KIB", "16")
    with pytest.raises(ConfigError, match=reason):
        load(str(tmp_path))


def test_well_formed_lists_and_resources_are_accepted(monkeypatch, tmp_path):
    monkeypatch.setenv("IDP_EXTRA_SCOPES", '["api:read", "orders.write"]')
    monkeypatch.setenv("IDP_RESOURCES", '{"https://api.example.com": {"access_token_format": "jwt", '
                                        '"scopes": ["api:read"]}, "urn:example:orders": {}}')
    cfg = load(str(tmp_path))
    assert cfg["EXTRA_SCOPES"] == ["api:read", "orders.write"] and set(cfg["RESOURCES"]) == {
        "https://api.example.com", "urn:example:orders"}


def test_a_secret_of_the_wrong_type_is_not_echoed(monkeypatch, tmp_path):
    f = tmp_path / "idp.toml"
    f.write_text("secret_key = 123456789012345678901234567890123\n")
    monkeypatch.setenv("IDP_CONFIG_FILE", str(f))
    with pytest.raises(ConfigError) as refused:
        load(str(tmp_path))
    message = str(refused.value)
    assert "SECRET_KEY must be text, got a value of type int" in message and "12345" not in message


@pytest.mark.parametrize("line,key", [("store_namespace = 5", "STORE_NAMESPACE"),
                                      ("clients_file = [1]", "CLIENTS_FILE"), ("keys_store = true", "KEYS_STORE")])
def test_every_text_setting_of_the_wrong_type_is_one_line(monkeypatch, tmp_path, line, key):
    """store_namespace = 5 in the file was a TypeError (a traceback) when the store was made."""
    f = tmp_path / "idp.toml"
    f.write_text(line + "\n")
    monkeypatch.setenv("IDP_CONFIG_FILE", str(f))
    with pytest.raises(ConfigError, match=f"{key} must be text"):
        load(str(tmp_path))


@pytest.mark.parametrize("idle,ok", [(0, True), (300, True), (299, False), (45, False)])
def test_an_idle_limit_is_none_or_minutes(tmp_path, idle, ok):
    """A use of a session is recorded at most once a minute: a limit of seconds would end
    sessions in use."""
    if ok:
        assert load(str(tmp_path), {"SESSION_IDLE_TTL": idle})["SESSION_IDLE_TTL"] == idle
    else:
        with pytest.raises(ConfigError, match="SESSION_IDLE_TTL must be 0"):
            load(str(tmp_path), {"SESSION_IDLE_TTL": idle})
