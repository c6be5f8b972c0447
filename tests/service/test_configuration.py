"""Configuration mistakes fail at start with one line naming the key (exit status 2), never a traceback;
`config show` prints TOML that reads back; unknown MAILTIDE_* variables are pointed out."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import pytest
from service_support import Cli
from sqlalchemy.engine import make_url

from mailtide.config import ConfigError, Settings, load_settings, warn_unknown_environment_variables

TAKEOUT = Path(__file__).parents[2] / "src" / "mailtide" / "demo_data" / "takeout" / "takeout.mbox"


def clean_failure(result, *expected: str, code: int = 2) -> None:  # type: ignore[no-untyped-def]
    stderr = " ".join(result.stderr.split())  # rich wraps long lines
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "╭" not in result.stderr, result.stderr
    for text in expected:
        assert text in stderr, stderr


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli.for_gmail(tmp_path, "http://127.0.0.1:9")


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in [name for name in os.environ if name.upper().startswith("MAILTIDE_")]:
        monkeypatch.delenv(name)


# --- values the environment cannot spell as JSON, and values that are no numbers of seconds


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MAILTIDE_PUBSUB_SUBSCRIPTIONS", "projects/p/topics/t", "is not projects/<project>/subscriptions/<name>"),
        ("MAILTIDE_WATCH_LABEL_IDS", '["INBOX",', "not a JSON list"),
        ("MAILTIDE_QUOTA_COSTS", "threads.get", "expected key=value pairs"),
        ("MAILTIDE_QUOTA_TIME_SCALE", "inf", "finite number"),
        ("MAILTIDE_DATABASE_URL", "sqlite://relative.db", "three slashes"),
    ],
)
def test_bad_environment_values_name_the_key(cli: Cli, variable: str, value: str, expected: str) -> None:
    cli.env[variable] = value
    key = variable.removeprefix("MAILTIDE_").lower()
    clean_failure(cli.run("config", "show"), f"invalid configuration: {key} ({variable})", expected)


def test_lists_and_tables_from_the_environment_as_json_or_comma_separated(
    clean_environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILTIDE_PUBSUB_SUBSCRIPTIONS", "projects/p/subscriptions/a, projects/p/subscriptions/b")
    monkeypatch.setenv("MAILTIDE_WATCH_LABEL_IDS", '["INBOX", "Label_7"]')
    monkeypatch.setenv("MAILTIDE_QUOTA_COSTS", "threads.get=10,messages.get=5")
    settings = load_settings()
    assert settings.pubsub_subscriptions == ["projects/p/subscriptions/a", "projects/p/subscriptions/b"]
    assert settings.watch_label_ids == ["INBOX", "Label_7"]
    assert settings.quota_costs == {"threads.get": 10, "messages.get": 5}
    monkeypatch.setenv("MAILTIDE_WATCH_LABEL_IDS", "INBOX")
    monkeypatch.setenv("MAILTIDE_QUOTA_COSTS", '{"threads.get": 12}')
    settings = load_settings()
    assert settings.watch_label_ids == ["INBOX"] and settings.quota_costs == {"threads.get": 12}


FLOAT_SECONDS = [
    name for name, field in Settings.model_fields.items() if field.annotation is float and name.endswith("_seconds")
]


@pytest.mark.parametrize("name", [*FLOAT_SECONDS, "quota_time_scale"])
@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_no_setting_takes_infinity_or_nan(clean_environment: None, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"{name} \(MAILTIDE_{name.upper()}\): Input should be a finite number"):
        load_settings(**{name: value})


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"heartbeat_seconds": 86_400}, "heartbeat_seconds (MAILTIDE_HEARTBEAT_SECONDS): Input should be less"),
        ({"http_timeout_seconds": 0}, "http_timeout_seconds (MAILTIDE_HTTP_TIMEOUT_SECONDS): Input should be greater"),
        ({"quota_time_scale": 1e-9}, "quota_time_scale (MAILTIDE_QUOTA_TIME_SCALE): Input should be greater"),
        ({"quota_costs": {"threads.get": -1}}, "quota_costs (MAILTIDE_QUOTA_COSTS) at threads.get: Input should be"),
    ],
)
def test_bounds(clean_environment: None, values: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as failure:
        load_settings(**values)
    assert expected in str(failure.value)


def test_an_infinite_quota_time_scale_stops_sync_before_it_starts(cli: Cli) -> None:
    cli.env["MAILTIDE_QUOTA_TIME_SCALE"] = "inf"
    clean_failure(cli.run("sync", "someone@example.com"), "quota_time_scale (MAILTIDE_QUOTA_TIME_SCALE)")


# --- database URLs that cannot be opened


def test_unusable_database_urls_fail_with_one_line(cli: Cli, tmp_path: Path) -> None:
    directory = tmp_path / "a-directory"
    directory.mkdir()
    clean_failure(cli.run("--db", str(directory), "jobs", "list"), "database_url", "is a directory")
    clean_failure(cli.run("--db", "sqlite://relative.db", "jobs", "list"), "database_url", "three slashes")
    clean_failure(cli.run("--db", "postgresql://u@h:port/db", "jobs", "list"), "database_url", "not a database URL")
    # demo builds its settings itself: the same line
    clean_failure(cli.run("--db", str(directory), "demo"), "database_url", "is a directory")


def test_an_unknown_postgresql_database_or_role_is_one_line(cli: Cli, postgres_url: str) -> None:
    url = make_url(postgres_url)
    no_database = url.set(database="mailtide_no_such_database").render_as_string(hide_password=False)
    no_role = url.set(username="mailtide_no_such_role").render_as_string(hide_password=False)
    clean_failure(cli.run("--db", no_database, "jobs", "list"), "database:", "does not exist", code=1)
    clean_failure(cli.run("--db", no_role, "jobs", "list"), "database:", "mailtide_no_such_role", code=1)


def test_emulator_refuses_an_owner_that_is_no_address(cli: Cli) -> None:
    clean_failure(cli.run("emulator", str(TAKEOUT), "--email", "notanemail"), "not an email address")


# --- config show


def test_config_show_prints_toml_that_reads_back(cli: Cli, tmp_path: Path) -> None:
    cli.env["MAILTIDE_API_TOKEN"] = "a-token-long-enough-123"  # a secret: commented out, so it reads back unset
    cli.env.update(
        MAILTIDE_QUOTA_COSTS='{"threads.get": 10, "messages.get": 5}',
        MAILTIDE_PUBSUB_SUBSCRIPTIONS="projects/p/subscriptions/a,projects/p/subscriptions/b",
        MAILTIDE_WATCH_LABEL_IDS="INBOX",
        MAILTIDE_OTEL_SERVICE_NAME='mail "tide" \\ test',
        MAILTIDE_RETAIN_FAILED_SECONDS="0.5",
    )
    shown = cli.run("config", "show")
    assert shown.returncode == 0, shown.stderr
    parsed = tomllib.loads(shown.stdout)
    assert parsed["quota_costs"] == {"threads.get": 10, "messages.get": 5}
    assert parsed["pubsub_subscriptions"] == ["projects/p/subscriptions/a", "projects/p/subscriptions/b"]
    assert parsed["watch_label_ids"] == ["INBOX"] and parsed["otel_service_name"] == 'mail "tide" \\ test'

    config_file = tmp_path / "shown.toml"
    config_file.write_text(shown.stdout)
    from_file = Cli({k: v for k, v in cli.env.items() if not k.startswith("MAILTIDE_")}, tmp_path)
    again = from_file.run("--config", str(config_file), "config", "show")
    assert again.returncode == 0, again.stderr
    secrets_unset = {"# api_token = (not set)", "# oauth_client_secret = (not set)"}
    assert set(again.stdout.splitlines()) - set(shown.stdout.splitlines()) == secrets_unset


# --- unknown MAILTIDE_* variables


def test_a_misspelt_variable_is_pointed_out_but_not_fatal(cli: Cli) -> None:
    cli.env.update(MAILTIDE_API_PROT="9000", MAILTIDE_UNRELATED_TOOL_FLAG="1")
    result = cli.run("config", "show")
    assert result.returncode == 0, result.stderr
    stderr = " ".join(result.stderr.split())
    assert "MAILTIDE_API_PROT is not a mailtide setting (did you mean MAILTIDE_API_PORT?)" in stderr
    assert "MAILTIDE_UNRELATED_TOOL_FLAG is not a mailtide setting; ignored" in stderr
    assert "api_port = 8787" in result.stdout


def test_unknown_variables_are_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    environ = {"MAILTIDE_HEARTBEAT_SECOND": "1", "MAILTIDE_POLL_SECONDS": "1", "HOME": "/"}
    with caplog.at_level(logging.WARNING, logger="mailtide.config"):
        assert warn_unknown_environment_variables(environ) == ["MAILTIDE_HEARTBEAT_SECOND"]
        assert warn_unknown_environment_variables(environ) == []
    [record] = caplog.records
    assert "did you mean MAILTIDE_HEARTBEAT_SECONDS?" in record.getMessage()


# --- exit status of "not found"


def test_unknown_account_or_job_is_a_bad_argument(cli: Cli) -> None:
    clean_failure(cli.run("jobs", "show", "999999"), "no job 999999")
    clean_failure(cli.run("jobs", "list", "--account", "nobody@example.com"), "nobody@example.com")
    clean_failure(cli.run("pubsub", "stop", "nobody@example.com"), "nobody@example.com")


def test_the_default_database_follows_data_dir(clean_environment: None, tmp_path: Path) -> None:
    moved = load_settings(data_dir=str(tmp_path / "elsewhere"))
    assert moved.database_url == f"sqlite:///{tmp_path / 'elsewhere' / 'mailtide.db'}"
    given = load_settings(data_dir=str(tmp_path / "elsewhere"), database_url=f"sqlite:///{tmp_path / 'a.db'}")
    assert given.database_url == f"sqlite:///{tmp_path / 'a.db'}"


def test_the_project_test_variables_are_not_typos(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        warned = warn_unknown_environment_variables({"MAILTIDE_CORPUS_DIR": "x", "MAILTIDE_TEST_POSTGRES_URL": "y"})
    assert warned == []
