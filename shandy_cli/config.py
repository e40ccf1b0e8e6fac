"""Settings, resolved as the contract says: flag > environment > ``.env`` > default.

The ``.env`` file is read with python-dotenv *without* touching ``os.environ``,
so a library caller's process environment is never changed behind its back.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from dotenv import dotenv_values
from platformdirs import user_state_dir

from shandy_cli.errors import ConfigError
from shandy_cli.profiles import DEFAULT_PROFILE, stored_profile
from shandy_cli.ratelimit import DEFAULT_PER_ENDPOINT, DEFAULT_TOTAL, RateLimits
from shandy_cli.redaction import check_api_key, mask_secret, printable

DEFAULT_BASE_URL = "https://open-api.saleshandy.com"
ENV_API_KEY = "SALESHANDY_API_KEY"
ENV_BASE_URL = "SALESHANDY_BASE_URL"
ENV_STATE_DIR = "SHANDY_STATE_DIR"
ENV_RATE_PER_ENDPOINT = "SHANDY_RATE_PER_ENDPOINT"
ENV_RATE_TOTAL = "SHANDY_RATE_TOTAL"
ENV_MAX_STREAM_BYTES = "SHANDY_MAX_STREAM_BYTES"
ENV_COLUMNAR = "SHANDY_COLUMNAR"
ENV_FASTEXCEL = "SHANDY_FASTEXCEL"
ENV_SANDBOX_DELAY = "SHANDY_SANDBOX_DELAY"
ENV_KEEP_DAYS = "SHANDY_KEEP_DAYS"
DEFAULT_KEEP_DAYS = 90  # finished runs older than this are pruned (pipeline/housekeeping.py)
ENV_SUPPRESS = "SHANDY_SUPPRESS"
ENV_PROFILE = "SHANDY_PROFILE"
ENV_CONFIG = "SHANDY_CONFIG"  # the jobs file (shandy.toml in the working directory)
ENV_WEBHOOK_SECRET = "SHANDY_WEBHOOK_SECRET"  # signs --notify documents (HMAC-SHA256)
# How a CSV is read: by size ("auto": the columnar reader from 2 MB up), "always" (tests,
# benchmarks) or "never". The environment spells them "", "1" and "0".
COLUMNAR_MODES = ("auto", "always", "never")
_COLUMNAR_SPELLINGS = {
    "": "auto",
    "auto": "auto",
    "1": "always",
    "always": "always",
    "0": "never",
    "never": "never",
}
DEFAULT_SANDBOX_DELAY = 1.0  # seconds the built-in sandbox takes to process an import
# The most a stream (stdin, a pipe) is copied aside: far above any real export, far
# below a full disk. A regular file is read in place and has no such bound.
DEFAULT_MAX_STREAM_BYTES = 4_000_000_000


@dataclass(frozen=True)
class Settings:
    """Every setting the program reads, resolved once (see ``resolve_settings``)."""

    api_key: str | None
    base_url: str
    state_dir: Path
    rate_limits: RateLimits = field(default_factory=RateLimits)
    max_stream_bytes: int = DEFAULT_MAX_STREAM_BYTES
    columnar: str = "auto"  # SHANDY_COLUMNAR, one of COLUMNAR_MODES
    fastexcel: bool = True  # SHANDY_FASTEXCEL: text-only XLSX sheets loaded by fastexcel
    sandbox_delay: float = DEFAULT_SANDBOX_DELAY  # SHANDY_SANDBOX_DELAY, for --sandbox
    keep_days: int = DEFAULT_KEEP_DAYS  # SHANDY_KEEP_DAYS: how long finished runs are kept
    # SHANDY_SUPPRESS: suppression lists every import applies (os.pathsep between files);
    # an import's own --suppress files are added to these, never in their place.
    suppress: tuple[Path, ...] = ()
    profile: str = DEFAULT_PROFILE  # --profile / SHANDY_PROFILE
    # Where the key came from: "--api-key", "SALESHANDY_API_KEY", ".env", "profile NAME";
    # None without one. What `auth status` and the errors about a refused key name.
    key_source: str | None = None
    webhook_secret: str | None = None  # SHANDY_WEBHOOK_SECRET
    config_file: Path | None = None  # --config / SHANDY_CONFIG; None: shandy.toml here

    def __repr__(self) -> str:  # never print the key, even in a debugger or traceback
        return (
            f"Settings(api_key={mask_secret(self.api_key)!r}, base_url={self.base_url!r}, "
            f"state_dir={str(self.state_dir)!r}, profile={self.profile!r})"
        )


log = logging.getLogger(__name__)
_WARNED: set[Path] = set()


def forget_warnings() -> None:
    """Warn again about a readable ``.env`` (each CLI invocation warns once)."""
    _WARNED.clear()


def read_dotenv(path: Path, warn: bool = True) -> dict[str, str]:
    """Values from a ``.env`` file; warns when others can read a file that may hold the key."""
    if not path.is_file():
        return {}
    if warn and os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        where = path.resolve()
        if where not in _WARNED:  # once per process, however often settings are resolved
            _WARNED.add(where)
            log.warning("%s is readable by group or others; run: chmod 600 %s", path, path)
    try:
        values = dotenv_values(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    return {k: v for k, v in values.items() if v is not None}


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# What ``url_problem`` finds: the URL is no URL, not http(s), or plain http off loopback.
NOT_A_URL, NOT_HTTP, PLAIN_HTTP = "is not a valid URL", "is not an http(s) URL", "plain http"


def url_problem(url: str) -> tuple[str | None, SplitResult | None]:
    """The one rule for every URL shandy sends to (the API, webhooks): https, or plain
    http to a loopback host only. Returns what is wrong (``NOT_A_URL``, ``NOT_HTTP``,
    ``PLAIN_HTTP``, None) and the URL's parts; each caller words its own error."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        return NOT_A_URL, None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return NOT_HTTP, parts
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        return PLAIN_HTTP, parts
    return None, parts


def check_base_url(url: str) -> str:
    """Refuse anything but https, except plain http to a loopback host (the sandbox)."""
    url = url.strip()
    problem, parts = url_problem(url)
    if problem in (NOT_A_URL, NOT_HTTP) or parts is None:
        raise ConfigError(f"base URL {printable(url)!r} {problem}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            "the base URL must not contain a user name or password (the API key is sent "
            "in a header; set SALESHANDY_API_KEY)"
        )
    if problem == PLAIN_HTTP:
        raise ConfigError(
            f"refusing plain-http base URL {url!r}: the API key would travel unencrypted; "
            "use https:// (plain http is allowed only to loopback)"
        )
    return url.rstrip("/")


def default_state_dir() -> Path:
    return Path(user_state_dir("shandy", appauthor=False))


def resolve_settings(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv_path: Path | None = None,
    max_stream_bytes: int | str | None = None,
    profile: str | None = None,
    config: str | os.PathLike[str] | None = None,
    need_key: bool = True,
) -> Settings:
    """Merge flags, environment and ``.env`` (in the working directory) into Settings.

    Every setting shandy reads is resolved here, in the contract's order: a flag (a
    keyword argument) wins over the environment, which wins over ``.env``. The API key
    and base URL then fall back to the profile (``--profile`` / ``SHANDY_PROFILE``,
    ``default``) stored by ``shandy auth login`` (``profiles.stored_profile``).
    ``need_key`` False (a command that never calls the API: ``runs``, ``trace``): the
    profile's key is not looked up, so the keychain is not read (nor asks, on macOS).
    """
    env = os.environ if environ is None else environ
    dotenv = read_dotenv(dotenv_path if dotenv_path is not None else Path(".env"))

    def pick(name: str, flag: object = None) -> str | None:
        if flag not in (None, ""):
            return str(flag)
        return env.get(name) or dotenv.get(name) or None

    state = pick(ENV_STATE_DIR, state_dir)
    chosen = pick(ENV_PROFILE, profile) or DEFAULT_PROFILE
    key, key_source = _key(api_key, env, dotenv)
    url = pick(ENV_BASE_URL, base_url)
    if key is None and need_key:  # the profile's, only when nothing else gives a key
        stored = stored_profile(chosen, env)
        if stored is not None and stored.api_key:
            key, key_source = stored.api_key, f"profile {chosen}"
            # its base URL goes with its key: a key from elsewhere is never sent to it
            url = url or stored.base_url
    per_endpoint = _rate(pick(ENV_RATE_PER_ENDPOINT), ENV_RATE_PER_ENDPOINT, DEFAULT_PER_ENDPOINT)
    total = _rate(pick(ENV_RATE_TOTAL), ENV_RATE_TOTAL, DEFAULT_TOTAL)
    stream = pick(ENV_MAX_STREAM_BYTES, max_stream_bytes)
    return Settings(
        api_key=check_api_key(key),
        base_url=check_base_url(url or DEFAULT_BASE_URL),
        state_dir=Path(state).expanduser() if state else default_state_dir(),
        rate_limits=RateLimits(per_endpoint=per_endpoint, total=total),
        max_stream_bytes=parse_size(stream, ENV_MAX_STREAM_BYTES, DEFAULT_MAX_STREAM_BYTES),
        columnar=columnar_mode(pick(ENV_COLUMNAR), ENV_COLUMNAR),
        fastexcel=_switch(pick(ENV_FASTEXCEL), ENV_FASTEXCEL),
        sandbox_delay=_seconds(pick(ENV_SANDBOX_DELAY), ENV_SANDBOX_DELAY, DEFAULT_SANDBOX_DELAY),
        keep_days=_days(pick(ENV_KEEP_DAYS), ENV_KEEP_DAYS, DEFAULT_KEEP_DAYS),
        suppress=_paths(pick(ENV_SUPPRESS)),
        profile=chosen,
        key_source=key_source if key else None,
        webhook_secret=pick(ENV_WEBHOOK_SECRET),
        config_file=_path(pick(ENV_CONFIG, config)),
    )


def _key(
    flag: str | None, env: Mapping[str, str], dotenv: Mapping[str, str]
) -> tuple[str | None, str | None]:
    """The API key from the flag, the environment or ``.env``, and which of them."""
    if flag:
        return flag, "--api-key"
    if env.get(ENV_API_KEY):
        return env[ENV_API_KEY], ENV_API_KEY
    if dotenv.get(ENV_API_KEY):
        return dotenv[ENV_API_KEY], ".env"
    return None, None


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def _paths(value: str | None) -> tuple[Path, ...]:
    """A list of files separated by ``os.pathsep`` (``:``, or ``;`` on Windows); empty
    parts are ignored."""
    if not value:
        return ()
    return tuple(
        Path(part.strip()).expanduser() for part in value.split(os.pathsep) if part.strip()
    )


def columnar_mode(value: str | None, name: str = "columnar") -> str:
    """``auto``, ``always`` or ``never`` (the environment's ``""``, ``1``, ``0`` too)."""
    mode = _COLUMNAR_SPELLINGS.get((value or "").strip().lower())
    if mode is None:
        raise ConfigError(
            f"{name} must be one of {', '.join(COLUMNAR_MODES)} (or 1, 0), not {value!r}"
        )
    return mode


def _switch(value: str | None, name: str) -> bool:
    """An on/off setting, on unless it says ``0`` (or false, no, off)."""
    text = (value or "1").strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0, not {value!r}")


def _seconds(value: str | None, name: str, default: float) -> float:
    """A duration in seconds: a finite number, zero or more."""
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ConfigError(f"{name} must be a number of seconds, zero or more, not {value!r}")
    return seconds


def _days(value: str | None, name: str, default: int) -> int:
    """A number of days: a whole number, 1 or more."""
    if value is None:
        return default
    text = value.strip()
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise ConfigError(f"{name} must be a whole number of days, 1 or more, not {value!r}")
    return int(text)


_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_SIZE = re.compile(r"(\d+)\s*([kmgt]?)(i?)b?", re.IGNORECASE)


def parse_size(value: str | None, name: str, default: int) -> int:
    """A byte count: ``4000000000``, ``500MB``, ``4GB``, ``4G`` (powers of 1000) or
    ``4GiB`` (powers of 1024); at least one byte."""
    if value is None:
        return default
    match = _SIZE.fullmatch(value.strip()) if value.isascii() else None
    if not match or (match.group(3) and not match.group(2)) or int(match.group(1)) < 1:
        raise ConfigError(f"{name} must be a size in bytes such as 500MB or 4GB, not {value!r}")
    number, unit, binary = match.groups()
    scale = 1024 ** " kmgt".index(unit.lower()) if binary else _UNITS[unit.lower()]
    return int(number) * scale


def _rate(value: str | None, name: str, default: int) -> int:
    """A calls-a-minute setting: a whole number from 1 up to the default (it may only lower)."""
    if value is None:
        return default
    text = value.strip()
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= default:
        raise ConfigError(f"{name} must be a whole number from 1 to {default}, not {value!r}")
    return int(text)
