"""Configuration precedence (flag > environment > .env > default), .env for every setting,
and URL safety."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from incli import Ran, run_cli

from shandy_cli.config import (
    DEFAULT_BASE_URL,
    check_base_url,
    forget_warnings,
    resolve_settings,
)
from shandy_cli.errors import ConfigError
from shandy_cli.redaction import mask_secret
from shandy_cli.sandbox import Sandbox


def write_env(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / ".env"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_flag_beats_environment_beats_dotenv(tmp_path: Path) -> None:
    dotenv = write_env(tmp_path, "SALESHANDY_API_KEY=from-dotenv\nSHANDY_STATE_DIR=/tmp/dot\n")
    env = {"SALESHANDY_API_KEY": "from-env"}
    s = resolve_settings(environ=env, dotenv_path=dotenv)
    assert s.api_key == "from-env"
    assert s.state_dir == Path("/tmp/dot")
    s = resolve_settings(api_key="from-flag", environ=env, dotenv_path=dotenv)
    assert s.api_key == "from-flag"
    s = resolve_settings(environ={}, dotenv_path=dotenv)
    assert s.api_key == "from-dotenv"


def test_defaults_without_anything(tmp_path: Path) -> None:
    s = resolve_settings(environ={}, dotenv_path=tmp_path / "missing.env")
    assert s.api_key is None
    assert s.base_url == DEFAULT_BASE_URL
    assert "shandy" in str(s.state_dir)


def test_dotenv_does_not_touch_process_environment(tmp_path: Path) -> None:
    dotenv = write_env(tmp_path, "SHANDY_TEST_ONLY_VAR=1\n")
    resolve_settings(environ={}, dotenv_path=dotenv)
    assert "SHANDY_TEST_ONLY_VAR" not in os.environ


def test_world_readable_dotenv_warns_through_logging_never_printing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    dotenv = write_env(tmp_path, "SALESHANDY_API_KEY=abc\n", mode=0o644)
    forget_warnings()
    with caplog.at_level(logging.WARNING, logger="shandy_cli"):
        resolve_settings(environ={}, dotenv_path=dotenv)
        resolve_settings(environ={}, dotenv_path=dotenv)  # once per process (invocation)
    warned = [r for r in caplog.records if r.name == "shandy_cli.config"]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    text = warned[0].getMessage()
    assert "readable by group or others" in text and f"chmod 600 {dotenv}" in text
    assert "abc" not in text
    assert capsys.readouterr() == ("", "")  # the library logs; it never prints


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8787", "http://localhost:1", "http://[::1]:80", "https://api.example.com"],
)
def test_allowed_base_urls(url: str) -> None:
    assert check_base_url(url + "/") == url


@pytest.mark.parametrize("url", ["http://open-api.saleshandy.com", "http://10.0.0.5", "ftp://x"])
def test_refused_base_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        check_base_url(url)


def test_repr_masks_key(tmp_path: Path) -> None:
    s = resolve_settings(api_key="supersecretkey1234", environ={}, dotenv_path=tmp_path / "x")
    assert "supersecretkey1234" not in repr(s)
    assert "1234" in repr(s)
    assert mask_secret("abc") == "****"


def test_rate_limits_can_be_lowered_from_env_or_dotenv(tmp_path: Path) -> None:
    dotenv = write_env(tmp_path, "SHANDY_RATE_PER_ENDPOINT=5\nSHANDY_RATE_TOTAL=50\n")
    s = resolve_settings(environ={}, dotenv_path=dotenv)
    assert (s.rate_limits.per_endpoint, s.rate_limits.total) == (5, 50)
    s = resolve_settings(environ={"SHANDY_RATE_PER_ENDPOINT": "3"}, dotenv_path=dotenv)
    assert s.rate_limits.per_endpoint == 3
    s = resolve_settings(environ={}, dotenv_path=tmp_path / "missing.env")
    assert (s.rate_limits.per_endpoint, s.rate_limits.total) == (20, 300)


@pytest.mark.parametrize("value", ["21", "0", "-1", "ten", "2.5", "301"])
def test_rate_limits_may_not_be_raised_or_garbage(tmp_path: Path, value: str) -> None:
    name = "SHANDY_RATE_TOTAL" if value == "301" else "SHANDY_RATE_PER_ENDPOINT"
    with pytest.raises(ConfigError, match=name):
        resolve_settings(environ={name: value}, dotenv_path=tmp_path / "missing.env")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("123", 123),
        ("500MB", 500_000_000),
        ("4GB", 4_000_000_000),
        ("4g", 4_000_000_000),
        ("2 KiB", 2048),
        ("1TB", 10**12),
        (None, 4_000_000_000),
    ],
)
def test_max_stream_bytes_takes_sizes(tmp_path: Path, text: str | None, size: int) -> None:
    environ = {} if text is None else {"SHANDY_MAX_STREAM_BYTES": text}
    got = resolve_settings(environ=environ, dotenv_path=tmp_path / "none")
    assert got.max_stream_bytes == size


@pytest.mark.parametrize("text", ["0", "-1", "1.5GB", "lots", "4iB", "GB", "\uff14GB"])
def test_max_stream_bytes_refuses_nonsense(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="SHANDY_MAX_STREAM_BYTES"):
        resolve_settings(environ={"SHANDY_MAX_STREAM_BYTES": text}, dotenv_path=tmp_path / "n")


def test_max_stream_bytes_flag_beats_environment(tmp_path: Path) -> None:
    got = resolve_settings(
        max_stream_bytes="1KB",
        environ={"SHANDY_MAX_STREAM_BYTES": "9GB"},
        dotenv_path=tmp_path / "none",
    )
    assert got.max_stream_bytes == 1000


# Every setting the program reads, a value other than its default, and where it lands.
DOTENV_CASES = {
    "SALESHANDY_API_KEY": ("k-from-dotenv", lambda s: s.api_key, "k-from-dotenv"),
    "SALESHANDY_BASE_URL": ("http://127.0.0.1:8787", lambda s: s.base_url, "http://127.0.0.1:8787"),
    "SHANDY_STATE_DIR": ("/tmp/shandy-dotenv", lambda s: s.state_dir, Path("/tmp/shandy-dotenv")),
    "SHANDY_RATE_PER_ENDPOINT": ("7", lambda s: s.rate_limits.per_endpoint, 7),
    "SHANDY_RATE_TOTAL": ("70", lambda s: s.rate_limits.total, 70),
    "SHANDY_MAX_STREAM_BYTES": ("5MB", lambda s: s.max_stream_bytes, 5_000_000),
    "SHANDY_COLUMNAR": ("1", lambda s: s.columnar, "always"),
    "SHANDY_FASTEXCEL": ("0", lambda s: s.fastexcel, False),
    "SHANDY_SANDBOX_DELAY": ("0.25", lambda s: s.sandbox_delay, 0.25),
    "SHANDY_KEEP_DAYS": ("30", lambda s: s.keep_days, 30),
    "SHANDY_SUPPRESS": (
        f"a.txt{os.pathsep}b.txt",
        lambda s: s.suppress,
        (Path("a.txt"), Path("b.txt")),
    ),
    "SHANDY_PROFILE": ("acme", lambda s: s.profile, "acme"),
    "SHANDY_CONFIG": ("jobs.toml", lambda s: s.config_file, Path("jobs.toml")),
    "SHANDY_WEBHOOK_SECRET": ("s3cret", lambda s: s.webhook_secret, "s3cret"),
}


def test_the_dotenv_cases_are_every_setting() -> None:
    import shandy_cli.config as config

    names = {v for k, v in vars(config).items() if k.startswith("ENV_")}
    assert names == set(DOTENV_CASES)


@pytest.mark.parametrize("name", DOTENV_CASES)
def test_dotenv_works_for_every_setting(tmp_path: Path, name: str) -> None:
    value, read, expected = DOTENV_CASES[name]
    dotenv = write_env(tmp_path, f"{name}={value}\n")
    default = read(resolve_settings(environ={}, dotenv_path=tmp_path / "none.env"))
    assert default != expected
    assert read(resolve_settings(environ={}, dotenv_path=dotenv)) == expected
    # an empty variable in the environment is unset: .env still counts
    assert read(resolve_settings(environ={name: ""}, dotenv_path=dotenv)) == expected


def test_dotenv_settings_reach_real_commands(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key, base URL and state dir from .env alone: `fields` talks to the sandbox and an
    import's run is journalled where .env says; a bad value in .env is one line, exit 2."""
    state = tmp_path / "dotenv-state"
    write_env(
        tmp_path,
        f"SALESHANDY_API_KEY=k-dotenv-1234\nSALESHANDY_BASE_URL={sandbox.url}\n"
        f"SHANDY_STATE_DIR={state}\n",
    )
    (tmp_path / "l.csv").write_text("Email\na@example.com\nb@example.com\n")
    fields = run_cli("fields", "--json", cwd=tmp_path)
    assert fields.returncode == 0, fields.stderr
    assert "Email" in {f["label"] for f in json.loads(fields.stdout)}
    done = run_cli(
        "import", "l.csv", "--step", "StepA1", "--json", "--poll-interval", "0.05", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    runs = run_cli("runs", "--json", cwd=tmp_path)
    assert [r["run_id"] for r in json.loads(runs.stdout)] == [json.loads(done.stdout)["run_id"]]
    assert (state / "journal.sqlite3").is_file()
    for name, bad in (("SHANDY_COLUMNAR", "sometimes"), ("SHANDY_RATE_TOTAL", "0")):
        write_env(tmp_path, f"SHANDY_STATE_DIR={state}\n{name}={bad}\n")
        refused = run_cli("runs", cwd=tmp_path)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert refused.stderr.startswith(f"shandy: error: {name} must be")


def test_dotenv_sandbox_delay_reaches_the_sandbox(tmp_path: Path) -> None:
    """SHANDY_SANDBOX_DELAY=30 in .env: a --sandbox import is still processing when its
    1 s --timeout passes (exit 5); 0 completes it."""
    (tmp_path / "slow.csv").write_text("Email\na@example.com\n")
    (tmp_path / "fast.csv").write_text("Email\nb@example.com\n")

    def run(name: str) -> Ran:
        args = ("--step", "StepA1", "--sandbox", "--json", "--timeout", "1")
        return run_cli("import", name, *args, "--poll-interval", "0.05", cwd=tmp_path)

    write_env(tmp_path, f"SHANDY_STATE_DIR={tmp_path / 'slow'}\nSHANDY_SANDBOX_DELAY=30\n")
    slow = run("slow.csv")
    assert slow.returncode == 5 and json.loads(slow.stdout)["completed"] is False, slow.stderr
    # (its own state dir, so a sandbox database of its own, without the slow import)
    write_env(tmp_path, f"SHANDY_STATE_DIR={tmp_path / 'fast'}\nSHANDY_SANDBOX_DELAY=0\n")
    fast = run("fast.csv")
    assert fast.returncode == 0 and json.loads(fast.stdout)["completed"] is True, fast.stderr


def test_the_key_says_where_it_came_from(tmp_path: Path) -> None:
    dotenv = write_env(tmp_path, "SALESHANDY_API_KEY=k-from-dotenv\n")
    none = tmp_path / "none.env"
    assert (
        resolve_settings(api_key="k-flag", environ={}, dotenv_path=dotenv).key_source == "--api-key"
    )
    got = resolve_settings(environ={"SALESHANDY_API_KEY": "k-env"}, dotenv_path=dotenv)
    assert (got.api_key, got.key_source) == ("k-env", "SALESHANDY_API_KEY")
    assert resolve_settings(environ={}, dotenv_path=dotenv).key_source == ".env"
    assert resolve_settings(environ={}, dotenv_path=none).key_source is None
