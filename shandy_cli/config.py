"""Settings, resolved as the contract says: flag > environment > ``.env`` > default.

The ``.env`` file is read with python-dotenv *without* touching ``os.environ``,
so a library caller's process environment is never changed behind its back.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values
from platformdirs import user_state_dir

from shandy_cli._files import make_missing_dirs
from shandy_cli.errors import ConfigError
from shandy_cli.ratelimit import DEFAULT_PER_ENDPOINT, DEFAULT_TOTAL, RateLimits

DEFAULT_BASE_URL = "https://open-api.saleshandy.com"
ENV_API_KEY = "SALESHANDY_API_KEY"
ENV_BASE_URL = "SALESHANDY_BASE_URL"
ENV_STATE_DIR = "SHANDY_STATE_DIR"
ENV_RATE_PER_ENDPOINT = "SHANDY_RATE_PER_ENDPOINT"
ENV_RATE_TOTAL = "SHANDY_RATE_TOTAL"
ENV_MAX_STREAM_BYTES = "SHANDY_MAX_STREAM_BYTES"
# The most a stream (stdin, a pipe) is copied aside: far above any real export, far
# below a full disk. A regular file is read in place and has no such bound.
DEFAULT_MAX_STREAM_BYTES = 4_000_000_000


@dataclass(frozen=True)
class Settings:
    api_key: str | None
    base_url: str
    state_dir: Path
    rate_limits: RateLimits = field(default_factory=RateLimits)
    max_stream_bytes: int = DEFAULT_MAX_STREAM_BYTES

    def __repr__(self) -> str:  # never print the key, even in a debugger or traceback
        return (
            f"Settings(api_key={mask_secret(self.api_key)!r}, base_url={self.base_url!r}, "
            f"state_dir={str(self.state_dir)!r})"
        )


def mask_secret(secret: str | None) -> str | None:
    """Show only the last four characters of a secret, e.g. ``****abcd``."""
    if not secret:
        return secret
    return "****" + secret[-4:] if len(secret) > 8 else "****"


# Every API key this process has seen. Anything shandy prints passes through
# ``redact`` first, so a key that slips into an exception message (httpx quotes
# an illegal header value in full, for one) is still never shown.
_SECRETS: set[str] = set()
_MIN_SECRET = 8  # shorter "keys" (a sandbox "test") are common words: masking them garbles text


def register_secret(secret: str | None) -> None:
    """Remember ``secret`` (and its trimmed form) so ``redact`` hides it."""
    if not secret:
        return
    for form in (secret, secret.strip()):
        if len(form) >= _MIN_SECRET:
            _SECRETS.add(form)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by its masked form."""
    for secret in sorted(_SECRETS, key=len, reverse=True):  # longest first: " k" before "k"
        if secret in text:
            text = text.replace(secret, mask_secret(secret.strip()) or "****")
    return text


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Escape control characters (ESC, BEL, CR, ...) so file names and values taken
    from hostile input cannot drive the terminal; newlines and tabs are kept."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


_LINE_BREAKS = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


def one_line(text: str) -> str:
    """A name (a file's, a column's) as it may appear inside one line of a message: like
    ``printable``, and newlines, CRs and tabs escaped too, so a file called
    ``x\\n2026-12-01T03:00:00 shandy: read 0 rows`` cannot forge a log line."""
    return printable(text.translate(_LINE_BREAKS))


def check_api_key(key: str | None) -> str | None:
    """The key as it can be sent: surrounding whitespace (a pasted newline) dropped;
    anything else that cannot go in an HTTP header refused without showing it."""
    if key is None:
        return None
    register_secret(key)
    stripped = key.strip()
    if not stripped:
        return None
    if any(not ("\x21" <= ch <= "\x7e") for ch in stripped):
        raise ConfigError(
            f"the API key ({mask_secret(stripped)}) contains spaces, control or non-ASCII "
            "characters; check SALESHANDY_API_KEY"
        )
    return stripped


_WARNED: set[Path] = set()


def read_dotenv(path: Path, warn: bool = True) -> dict[str, str]:
    """Values from a ``.env`` file; warns when others can read a file that may hold the key."""
    if not path.is_file():
        return {}
    if warn and os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        where = path.resolve()
        if where not in _WARNED:  # once per process, however often settings are resolved
            _WARNED.add(where)
            print(
                f"shandy: warning: {path} is readable by group or others; run: chmod 600 {path}",
                file=sys.stderr,
            )
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


def check_base_url(url: str) -> str:
    """Refuse anything but https, except plain http to a loopback host (the sandbox)."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"base URL {printable(url)!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"base URL {printable(url)!r} is not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            "the base URL must not contain a user name or password (the API key is sent "
            "in a header; set SALESHANDY_API_KEY)"
        )
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigError(
            f"refusing plain-http base URL {url!r}: the API key would travel unencrypted; "
            "use https:// (plain http is allowed only to loopback)"
        )
    return url.rstrip("/")


def default_state_dir() -> Path:
    return Path(user_state_dir("shandy", appauthor=False))


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) 0700 if missing: it holds prospects' data.

    An existing directory keeps its mode (see ``make_missing_dirs``).
    """
    try:
        make_missing_dirs(path)
        if not path.is_dir():
            raise FileExistsError(path)
    except FileExistsError:
        raise ConfigError(f"{path} exists and is not a directory") from None
    except PermissionError:
        raise ConfigError(
            f"cannot create the directory {path}: permission "
            "denied; choose another (--state-dir, --report-dir)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot use the directory {path}: {exc.strerror or exc}") from None
    return path


def resolve_settings(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv_path: Path | None = None,
    max_stream_bytes: int | str | None = None,
) -> Settings:
    """Merge flags, environment and ``.env`` (in the working directory) into Settings."""
    env = os.environ if environ is None else environ
    dotenv = read_dotenv(dotenv_path if dotenv_path is not None else Path(".env"))

    def pick(flag: str | os.PathLike[str] | None, name: str) -> str | None:
        if flag not in (None, ""):
            return str(flag)
        return env.get(name) or dotenv.get(name) or None

    url = check_base_url(pick(base_url, ENV_BASE_URL) or DEFAULT_BASE_URL)
    state = pick(state_dir, ENV_STATE_DIR)
    limits = RateLimits(
        per_endpoint=_rate(pick(None, ENV_RATE_PER_ENDPOINT), ENV_RATE_PER_ENDPOINT,
                           DEFAULT_PER_ENDPOINT),
        total=_rate(pick(None, ENV_RATE_TOTAL), ENV_RATE_TOTAL, DEFAULT_TOTAL),
    )  # fmt: skip
    return Settings(
        api_key=check_api_key(pick(api_key, ENV_API_KEY)),
        base_url=url,
        state_dir=Path(state).expanduser() if state else default_state_dir(),
        rate_limits=limits,
        max_stream_bytes=parse_size(
            pick(None if max_stream_bytes is None else str(max_stream_bytes),
                 ENV_MAX_STREAM_BYTES),
            ENV_MAX_STREAM_BYTES, DEFAULT_MAX_STREAM_BYTES,
        ),
    )  # fmt: skip


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
