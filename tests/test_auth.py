"""`shandy auth` and account profiles: real HTTP to the sandbox, real files, a fresh HOME.

Each test gets its own HOME and config dir (``fresh``), and the keychain keyring would
use is decided by ``PYTHON_KEYRING_BACKEND``: keyring's fail backend (no keychain, as on
a headless server: the file fallback), or a stand-in from ``keyring_store``.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from incli import Ran, run_cli

from shandy_cli.config import resolve_settings
from shandy_cli.errors import ConfigError
from shandy_cli.profiles import check_name, stored_profile

NO_KEYCHAIN = "keyring.backends.fail.Keyring"
SHANDY = [sys.executable, "-m", "shandy_cli"]
KEY_A = "acme-key-0123456789abcdef"
KEY_B = "beta-key-fedcba9876543210"
LEADS = "Email,First Name\nann@example.com,Ann\nbob@example.com,Bob\n"


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh HOME with nothing in it, no keychain, no key anywhere; the working dir."""
    home = tmp_path / "home"
    home.mkdir()
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "SHANDY_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", NO_KEYCHAIN)
    monkeypatch.setenv("KEYRING_STORE_FILE", str(tmp_path / "keychain.json"))
    work = tmp_path / "work"
    work.mkdir()
    (work / "leads.csv").write_text(LEADS)
    yield work


def config_dir(work: Path) -> Path:
    return work.parent / "home" / ".config" / "shandy"


def env(work: Path, **extra: str) -> dict[str, str]:
    """Our settings for a run: the state dir in the test's tree (run_cli unsets the rest of
    ours; a test that moves the config dir sets SHANDY_CONFIG_DIR with monkeypatch)."""
    moved = {k: v for k, v in os.environ.items() if k == "SHANDY_CONFIG_DIR"}
    return {"SHANDY_STATE_DIR": str(work.parent / "state"), **moved, **extra}


def login(work: Path, name: str, key: str, url: str, *more: str) -> Ran:
    args = ("auth", "login", "--profile", name, "--with-key", "--base-url", url, *more)
    return run_cli(*args, cwd=work, env=env(work), stdin=(key + "\n").encode())


def everything_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_file_fallback_keeps_the_key_0600_and_nowhere_else(fresh: Path, sandbox) -> None:
    ran = login(fresh, "acme", KEY_A, sandbox.url)
    assert ran.returncode == 0, ran.stderr
    assert "no keychain works here" in ran.stderr  # and says where instead
    keys = config_dir(fresh) / "credentials.json"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_dir(fresh).stat().st_mode) == 0o700
    assert stat.S_IMODE((config_dir(fresh) / "profiles.json").stat().st_mode) == 0o600
    assert json.loads(keys.read_text()) == {"acme": KEY_A}
    assert KEY_A not in (config_dir(fresh) / "profiles.json").read_text()

    ran2 = run_cli("-v", "--profile", "acme", "import", "leads.csv", cwd=fresh, env=env(fresh))
    assert ran2.returncode == 0, ran2.stderr
    for out in (ran.stdout, ran.stderr, ran2.stdout, ran2.stderr):
        assert KEY_A not in out
    assert KEY_A.encode() not in everything_under(fresh.parent / "state")
    assert KEY_A.encode() not in everything_under(fresh)


def test_keychain_path(fresh: Path, sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring_store.FileKeychain")
    ran = login(fresh, "acme", KEY_A, sandbox.url)
    assert ran.returncode == 0, ran.stderr
    assert "keychain (FileKeychain)" in ran.stdout
    assert "warning" not in ran.stderr
    assert not (config_dir(fresh) / "credentials.json").exists()
    chain = json.loads((fresh.parent / "keychain.json").read_text())
    assert chain == {"shandy/acme": KEY_A}

    status = run_cli("auth", "status", "--json", cwd=fresh, env=env(fresh))
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert [(p["name"], p["store"], p["key"], p["works"]) for p in doc["profiles"]] == [
        ("acme", "keychain", "****cdef", True)
    ]
    assert KEY_A not in status.stdout

    ran2 = run_cli("import", "leads.csv", cwd=fresh, env=env(fresh, SHANDY_PROFILE="acme"))
    assert ran2.returncode == 0, ran2.stderr

    out = run_cli("auth", "logout", "--profile", "acme", cwd=fresh, env=env(fresh))
    assert out.returncode == 0, out.stderr
    assert json.loads((fresh.parent / "keychain.json").read_text()) == {}
    again = run_cli("auth", "logout", "--profile", "acme", cwd=fresh, env=env(fresh))
    assert again.returncode == 2 and "no profile 'acme'" in again.stderr


def test_a_locked_keychain_falls_back_to_the_file_and_says_why(
    fresh: Path, sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring_store.LockedKeychain")
    ran = login(fresh, "acme", KEY_A, sandbox.url)
    assert ran.returncode == 0, ran.stderr
    assert "keychain refused the key (the keychain is locked)" in ran.stderr
    assert json.loads((config_dir(fresh) / "credentials.json").read_text()) == {"acme": KEY_A}
    forced = login(fresh, "other", KEY_B, sandbox.url, "--store", "keychain")
    assert forced.returncode == 2 and "keychain refused" in forced.stderr
    assert "other" not in (config_dir(fresh) / "profiles.json").read_text()


def test_precedence_flag_env_dotenv_profile(fresh: Path, sandbox, tmp_path: Path) -> None:
    assert login(fresh, "acme", KEY_A, sandbox.url).returncode == 0
    environ = dict(os.environ)
    dotenv = tmp_path / "dot.env"
    dotenv.write_text("SALESHANDY_API_KEY=dotenv-key-123456789\n")
    empty = tmp_path / "none.env"

    def source(**kw: object) -> tuple[str | None, str | None, str]:
        s = resolve_settings(profile="acme", **kw)  # type: ignore[arg-type]
        return s.api_key, s.key_source, s.base_url

    assert source(environ=environ, dotenv_path=empty) == (KEY_A, "profile acme", sandbox.url)
    assert source(environ=environ, dotenv_path=dotenv)[:2] == (
        "dotenv-key-123456789",
        ".env",
    )
    with_env = {**environ, "SALESHANDY_API_KEY": "env-key-123456789"}
    assert source(environ=with_env, dotenv_path=dotenv)[:2] == (
        "env-key-123456789",
        "SALESHANDY_API_KEY",
    )
    assert source(api_key="flag-key-123456789", environ=with_env, dotenv_path=dotenv)[:2] == (
        "flag-key-123456789",
        "--api-key",
    )
    # the profile's base URL applies unless a flag, the environment or .env gives one
    other = {**environ, "SALESHANDY_BASE_URL": "https://api.example.com"}
    assert source(environ=other, dotenv_path=empty)[2] == "https://api.example.com"
    # ... and only with the profile's own key: a key from elsewhere never goes to it
    assert source(environ=with_env, dotenv_path=empty)[1:] == (
        "SALESHANDY_API_KEY",
        "https://open-api.saleshandy.com",
    )
    # status says which key wins now
    status = run_cli(
        "auth", "status", "--offline", cwd=fresh, env=env(fresh, SALESHANDY_API_KEY="e" * 20)
    )
    assert status.returncode == 0, status.stderr
    assert "the key from SALESHANDY_API_KEY, which wins over profile default" in status.stdout


def test_done_when_from_a_fresh_home_in_real_processes(fresh: Path, sandbox) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    environ["SHANDY_STATE_DIR"] = str(fresh.parent / "state")
    shandy = SHANDY
    login_cmd = [*shandy, "auth", "login", "--profile", "acme", "--with-key"]
    ran = subprocess.run(
        [*login_cmd, "--base-url", sandbox.url],
        input=KEY_A + "\n",
        capture_output=True,
        text=True,
        cwd=fresh,
        env=environ,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    for extra, args in (({}, ["--profile", "acme"]), ({"SHANDY_PROFILE": "acme"}, [])):
        imp = subprocess.run(
            [*shandy, *args, "import", "leads.csv", "--step", "StepA1", "--json", "--force"],
            capture_output=True,
            text=True,
            cwd=fresh,
            env={**environ, **extra},
            timeout=60,
        )
        assert imp.returncode == 0, imp.stderr
        doc = json.loads(imp.stdout)
        assert doc["completed"] and doc["rows_submitted"] == 2
        assert KEY_A not in imp.stdout + imp.stderr


def test_two_profiles_keep_their_ledgers_apart(fresh: Path, sandbox) -> None:
    assert login(fresh, "a", KEY_A, sandbox.url).returncode == 0
    assert login(fresh, "b", KEY_B, sandbox.url).returncode == 0

    def skipped(profile: str, flag: str) -> int:
        # --force: the same file into the same step is "already completed" whichever the
        # account (test_the_same_file_for_two_accounts_is_two_runs): the ledger is tested here
        step = ("import", "leads.csv", "--step", "StepA1", "--force")
        args = ("--profile", profile, *step, flag, "--json")
        ran = run_cli(*args, cwd=fresh, env=env(fresh))
        assert ran.returncode == 0, ran.stderr
        return int(json.loads(ran.stdout)["rows_skipped"])

    assert skipped("a", "--only-new") == 0
    assert skipped("b", "--only-new") == 0  # account b never had them
    assert skipped("a", "--only-new") == 2
    assert skipped("b", "--only-changed") == 2
    (fresh / "leads.csv").write_text(LEADS.replace("Ann", "Anne"))
    assert skipped("a", "--only-changed") == 1  # Ann changed for a; b is untouched
    assert skipped("b", "--only-new") == 2


def test_the_same_file_for_two_accounts_is_two_runs(fresh: Path, sandbox) -> None:
    assert login(fresh, "a", KEY_A, sandbox.url).returncode == 0
    assert login(fresh, "b", KEY_B, sandbox.url).returncode == 0
    runs = []
    for profile in ("a", "b"):
        args = ("--profile", profile, "import", "leads.csv", "--step", "StepA1", "--json")
        ran = run_cli(*args, cwd=fresh, env=env(fresh))
        assert ran.returncode == 0, ran.stderr
        runs.append(json.loads(ran.stdout)["run_id"])
    assert runs[0] != runs[1]


def test_a_refused_key_is_stored_nowhere_and_says_so(fresh: Path, sandbox_factory) -> None:
    guarded = sandbox_factory(api_key=KEY_B)
    ran = login(fresh, "acme", KEY_A, guarded.url)
    assert ran.returncode == 3, ran.stderr
    assert "nothing" not in ran.stdout and KEY_A not in ran.stderr
    assert not config_dir(fresh).exists()
    # a network failure: exit 4, nothing stored
    dead = login(fresh, "acme", KEY_A, "http://127.0.0.1:9")
    assert dead.returncode == 4, dead.stderr
    assert not config_dir(fresh).exists()
    # an empty key: exit 2
    empty = login(fresh, "acme", "", guarded.url)
    assert empty.returncode == 2 and "no API key given" in empty.stderr


def test_a_refused_profile_key_names_its_source(fresh: Path, sandbox_factory) -> None:
    open_door = sandbox_factory(state_dir=fresh.parent / "sb1")
    assert login(fresh, "acme", KEY_A, open_door.url).returncode == 0
    open_door.stop()
    guarded = sandbox_factory(state_dir=fresh.parent / "sb2", api_key=KEY_B)
    index = config_dir(fresh) / "profiles.json"
    index.write_text(index.read_text().replace(open_door.url, guarded.url))
    ran = run_cli("--profile", "acme", "sequences", cwd=fresh, env=env(fresh))
    assert ran.returncode == 3
    assert "****cdef from profile acme" in ran.stderr
    status = run_cli("auth", "status", cwd=fresh, env=env(fresh))
    assert status.returncode == 3 and "refused" in status.stdout


def test_an_unknown_profile_is_said_once(fresh: Path, sandbox) -> None:
    ran = run_cli("--profile", "nosuch", "sequences", cwd=fresh, env=env(fresh))
    assert ran.returncode == 3  # no key: as without profiles
    lines = ran.stderr.strip().splitlines()
    assert lines[0] == (
        f"shandy: warning: no profile 'nosuch' in {config_dir(fresh)}: run shandy auth login "
        "--profile nosuch (shandy auth status lists the profiles)"
    )
    assert lines[1].startswith("shandy: error: no API key") and len(lines) == 2
    # a command that needs no key works, and never looks the profile up
    runs = run_cli("runs", cwd=fresh, env=env(fresh, SHANDY_PROFILE="nosuch"))
    assert runs.returncode == 0 and "nosuch" not in runs.stderr
    # a key from the environment wins, and never asks for the profile's
    given = env(fresh, SALESHANDY_API_KEY=KEY_A, SALESHANDY_BASE_URL=sandbox.url)
    ok = run_cli("--profile", "nosuch", "sequences", cwd=fresh, env=given)
    assert ok.returncode == 0, ok.stderr
    assert "nosuch" not in ok.stderr


@pytest.mark.parametrize("name", ["../x", "a\nb", "x" * 200, "-rf", "a/b", ".hidden", "é"])
def test_hostile_profile_names_are_refused(fresh: Path, sandbox, name: str) -> None:
    ran = login(fresh, name, KEY_A, sandbox.url)
    assert ran.returncode == 2
    assert len(ran.stderr.strip().splitlines()) == 1 and "is not allowed" in ran.stderr
    assert not config_dir(fresh).exists()
    via_env = run_cli("sequences", cwd=fresh, env=env(fresh, SHANDY_PROFILE=name))
    assert via_env.returncode == 2 and "is not allowed" in via_env.stderr


def test_a_damaged_index_is_one_line(fresh: Path) -> None:
    config_dir(fresh).mkdir(parents=True)
    (config_dir(fresh) / "profiles.json").write_text("{not json")
    ran = run_cli("auth", "status", cwd=fresh, env=env(fresh))
    assert ran.returncode == 2 and "is damaged" in ran.stderr
    assert "Traceback" not in ran.stderr


def test_status_with_no_profiles(fresh: Path) -> None:
    ran = run_cli("auth", "status", cwd=fresh, env=env(fresh))
    assert ran.returncode == 0 and "no profiles" in ran.stdout
    assert stored_profile("default", os.environ) is None  # nothing made, nothing created
    assert not config_dir(fresh).exists()


@given(st.text(max_size=80))
def test_a_name_is_refused_or_safe_as_a_word(name: str) -> None:
    try:
        check_name(name)
    except ConfigError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 300
        return
    assert name.isascii() and name.isprintable() and "/" not in name and " " not in name
    assert not name.startswith((".", "-")) and 0 < len(name) <= 64


def test_resume_continues_with_the_runs_profile(fresh: Path, sandbox) -> None:
    assert login(fresh, "acme", KEY_A, sandbox.url).returncode == 0
    args = ("--profile", "acme", "import", "leads.csv", "--step", "StepA1", "--no-wait")
    started = run_cli(*args, "--json", cwd=fresh, env=env(fresh))
    assert started.returncode == 5 or started.returncode == 0, started.stderr
    # no --profile, no SHANDY_PROFILE, no key: the journal's profile gives the key
    resumed = run_cli("resume", "--last", "--json", cwd=fresh, env=env(fresh))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["completed"]
    # a profile that is not the run's is used when asked for (here: one that is missing)
    other = run_cli("resume", "--last", "--profile", "nosuch", cwd=fresh, env=env(fresh))
    assert other.returncode != 0 and "no profile 'nosuch'" in other.stderr


def test_sandbox_profile_and_tab_separated_status(fresh: Path, sandbox) -> None:
    ran = run_cli(
        "auth", "login", "--sandbox", "--base-url", sandbox.url, cwd=fresh, env=env(fresh)
    )
    assert ran.returncode == 0, ran.stderr
    assert "profile default: key ****" in ran.stdout
    status = run_cli("auth", "status", cwd=fresh, env=env(fresh))
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].split("\t") == ["in use", "profile", "key", "kept in", "base URL", "works"]
    assert lines[1].split("\t") == [
        "*",
        "default",
        "****-key",
        str(config_dir(fresh) / "credentials.json"),
        sandbox.url,
        "yes",
    ]
    fields = run_cli("fields", "--json", cwd=fresh, env=env(fresh))  # the default profile
    assert fields.returncode == 0, fields.stderr


def test_logins_at_once_lose_no_profile(fresh: Path, sandbox) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SALESHANDY_", "SHANDY_"))}
    names = [f"client{i}" for i in range(6)]
    procs = [
        subprocess.Popen(
            [*SHANDY, "auth", "login", "--profile", name, "--with-key", "--base-url", sandbox.url],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=fresh,
            env=environ,
        )
        for name in names
    ]
    for name, proc in zip(names, procs, strict=True):
        _, err = proc.communicate(f"key-of-{name}-123456\n".encode(), timeout=60)
        assert proc.returncode == 0, err
    index = json.loads((config_dir(fresh) / "profiles.json").read_text())
    keys = json.loads((config_dir(fresh) / "credentials.json").read_text())
    assert sorted(index["profiles"]) == names
    assert keys == {name: f"key-of-{name}-123456" for name in names}
    leftovers = [p.name for p in config_dir(fresh).iterdir() if p.name.endswith(".part")]
    assert leftovers == []


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KB file system (a tmpfs; root only): a disk that fills up."""
    where = tmp_path / "tiny"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_a_full_disk_keeps_what_was_there(
    fresh: Path, sandbox, tiny_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHANDY_CONFIG_DIR", str(tiny_disk / "cfg"))
    assert login(fresh, "first", KEY_A, sandbox.url).returncode == 0
    before = {p.name: p.read_bytes() for p in (tiny_disk / "cfg").iterdir()}
    filler = tiny_disk / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as fh:
        while True:
            fh.write(b"\0" * 4096)
            fh.flush()
    ran = login(fresh, "second", KEY_B, sandbox.url)
    assert ran.returncode == 2, ran.stderr
    # the profiles index, or (no fcntl) the soft lock's marker, is what the disk refused
    assert ran.stderr.strip().splitlines()[-1].lower().endswith("no space left on device")
    after = {p.name: p.read_bytes() for p in (tiny_disk / "cfg").iterdir()}
    assert after == before  # no half file, no .part, the first profile intact
    filler.unlink()
    works = run_cli("--profile", "first", "fields", cwd=fresh, env=env(fresh))
    assert works.returncode == 0, works.stderr


def test_login_checks_and_keeps_the_environments_base_url(fresh: Path, sandbox) -> None:
    ran = run_cli(
        "auth", "login", "--profile", "acme", "--with-key",
        cwd=fresh, env=env(fresh, SALESHANDY_BASE_URL=sandbox.url), stdin=KEY_A.encode(),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert f"base URL {sandbox.url}" in ran.stdout
    again = run_cli("--profile", "acme", "fields", cwd=fresh, env=env(fresh))
    assert again.returncode == 0, again.stderr
    bad = run_cli(
        "auth", "login", "--with-key", "--base-url", "http://example.com",
        cwd=fresh, env=env(fresh), stdin=KEY_A.encode(),
    )  # fmt: skip
    assert bad.returncode == 2 and "refusing plain-http" in bad.stderr


def test_a_keychain_that_cannot_be_read_is_a_warning_with_the_way_out(
    fresh: Path, sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring_store.FileKeychain")
    assert login(fresh, "acme", KEY_A, sandbox.url).returncode == 0
    index = config_dir(fresh) / "profiles.json"
    # cron: the keychain the key went to cannot be opened there
    index.write_text(
        index.read_text().replace("keyring_store.FileKeychain", "keyring_store.LockedKeychain")
    )
    ran = run_cli("--profile", "acme", "sequences", cwd=fresh, env=env(fresh))
    assert ran.returncode == 3
    assert "the keychain is locked" in ran.stderr and "--store file" in ran.stderr
    runs = run_cli("runs", cwd=fresh, env=env(fresh, SHANDY_PROFILE="acme"))
    assert runs.returncode == 0, runs.stderr
    status = run_cli("auth", "status", cwd=fresh, env=env(fresh))
    assert status.returncode == 2 and "cannot be read here" in status.stdout


def test_commands_that_never_call_the_api_never_read_the_keychain(
    fresh: Path, sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`shandy runs`, `runs --prune` and `trace` read the journal only: asking the keychain
    for a key they do not use could prompt on macOS. An import still reads it."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring_store.CountingKeychain")
    reads = tmp_path / "reads.txt"
    monkeypatch.setenv("KEYRING_READS_FILE", str(reads))
    assert login(fresh, "default", KEY_A, sandbox.url).returncode == 0
    reads.unlink(missing_ok=True)
    imported = run_cli("import", "leads.csv", "--step", "StepA1", cwd=fresh, env=env(fresh))
    assert imported.returncode == 0, imported.stderr
    assert reads.read_text().count("\n") >= 1  # the import took the profile's key
    reads.unlink()
    (fresh / "shandy.toml").write_text(
        '[jobs.n]\nfiles = ["leads.csv"]\nstep = "StepA1"\nprofile = "default"\n'
    )
    for args in (("runs",), ("runs", "--prune"), ("trace", "ann@example.com"), ("jobs",)):
        ran = run_cli(*args, cwd=fresh, env=env(fresh))
        assert ran.returncode == 0, (args, ran.stderr)
    assert not reads.exists(), reads.read_text()
