"""Sources, rate limits and the settings of a cluster, without servers (the breaker's findings)."""

from __future__ import annotations

from pathlib import Path

import pytest

import warehouse.sources as sources_module
from ingest_api.errors import ApiError
from ingest_api.ratelimit import SourceRateLimiter
from warehouse.settings import STACK_S3_ENV, Settings, SourceConfig, check_rate_limit, read_settings
from warehouse.sources import SourceRegistry, add_source, hash_key


@pytest.mark.parametrize("value", ["5000/second", "100 per 10 minutes", "600/minute", "10/2 seconds"])
def test_one_rate_limit_is_accepted(value: str) -> None:
    assert check_rate_limit(value) == value


@pytest.mark.parametrize("value", ["garbage", "0/second", "5 per 0 second", "1/second;2/minute", ""])
def test_anything_else_is_refused_not_silently_changed(value: str) -> None:
    with pytest.raises(ValueError, match="is not one rate limit"):
        check_rate_limit(value)
    with pytest.raises(ValueError):
        SourceConfig(name="web", write_key_sha256="0" * 64, rate_limit=value)


def test_a_source_re_added_with_another_limit_gets_it() -> None:
    limiter = SourceRateLimiter("1000/minute")
    old = SourceConfig(name="web", write_key_sha256="1" * 64, rate_limit="3/minute")
    limiter.check(old, 3)
    with pytest.raises(ApiError) as refused:
        limiter.check(old, 1)
    assert refused.value.status_code == 429
    new = SourceConfig(name="web", write_key_sha256="2" * 64, rate_limit="1000/minute")
    limiter.check(new, 500)  # counted against 1000/minute, not the old 3/minute


def test_an_unknown_key_reads_the_sources_file_only_when_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sources.json"
    add_source(path, "web")
    reads: list[Path] = []
    real = sources_module.read_sources_file
    monkeypatch.setattr(sources_module, "read_sources_file", lambda p: reads.append(p) or real(p))
    registry = SourceRegistry([], path, refresh_s=0)
    for _ in range(5):
        assert registry.authenticate("elk_unknown") is None
    assert len(reads) == 1  # at the start; nothing changed since
    key = add_source(path, "mobile")  # (reads the file itself)
    reads.clear()
    assert registry.authenticate(key) is not None and len(reads) == 1


def test_a_name_twice_refuses_every_key_until_fixed(tmp_path: Path) -> None:
    path = tmp_path / "sources.json"
    key = add_source(path, "web")
    twice = SourceConfig(name="web", write_key_sha256=hash_key("elk_other"))
    registry = SourceRegistry([twice], path, refresh_s=0)  # the constructor logs, does not raise
    with pytest.raises(sources_module.SourcesError, match="configured twice"):
        registry.authenticate(key)
    with pytest.raises(sources_module.SourcesError):
        registry.check()


def test_settings_errors_never_echo_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EVENTLAKE_REDIS_URL", "unix:///tmp/x?password=pw123")
    monkeypatch.setenv("EVENTLAKE_DAGSTER_POSTGRES_URL", "postgresql://u:secret456@h/db")
    with pytest.raises(SystemExit):
        read_settings("test")
    err = capsys.readouterr().err
    assert "EVENTLAKE_REDIS_URL" in err and "EVENTLAKE_DAGSTER_POSTGRES_URL" in err and "psycopg2" in err
    assert "pw123" not in err and "secret456" not in err


@pytest.mark.parametrize(
    ("endpoint", "allow_http", "message"),
    [("127.0.0.1:7480", True, "needs its scheme"), ("http://127.0.0.1:7480", False, "EVENTLAKE_S3_ALLOW_HTTP")],
)
def test_an_s3_endpoint_must_say_its_scheme_and_plain_http_must_be_allowed(
    endpoint: str, allow_http: bool, message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(data_dir=tmp_path, s3_endpoint=endpoint, s3_allow_http=allow_http)


def test_the_clis_see_the_lake_of_a_running_s3_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From the new-user trial: with the stack on S3, eventlake-query in another shell counted 0
    events (it read the local folder). While the stack runs, its settings file is read; the
    environment still wins."""
    env_file = tmp_path / STACK_S3_ENV
    env_file.parent.mkdir()
    env_file.write_text(
        "EVENTLAKE_LAKE_URI=s3://eventlake-hot/lake\nEVENTLAKE_S3_ENDPOINT=http://127.0.0.1:7480\n"
        "EVENTLAKE_S3_ALLOW_HTTP=true\nEVENTLAKE_S3_ACCESS_KEY_ID=k\nEVENTLAKE_S3_SECRET_ACCESS_KEY=s\n"
    )
    monkeypatch.setenv("EVENTLAKE_DATA_DIR", str(tmp_path))
    settings = read_settings("test")
    assert settings.lake_root == "s3://eventlake-hot/lake"
    assert settings.storage_options is not None and settings.storage_options["AWS_ENDPOINT_URL"].endswith(":7480")
    monkeypatch.setenv("EVENTLAKE_LAKE_URI", str(tmp_path / "elsewhere"))
    assert read_settings("test").lake_root == str(tmp_path / "elsewhere")
    env_file.unlink()  # the stack stopped
    monkeypatch.delenv("EVENTLAKE_LAKE_URI")
    assert read_settings("test").lake_root == str((tmp_path / "lake").resolve())
