"""Settings, resolved as the contract says: flag > environment > ``.env`` > default.

The ``.env`` file is read with python-dotenv *without* touching ``os.environ``,
so a library caller's process environment is never changed behind its back.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values
from platformdirs import user_state_dir

from shandy_cli.errors import ConfigError

DEFAULT_BASE_URL = "https://open-api.saleshandy.com"
ENV_API_KEY = "SALESHANDY_API_KEY"
ENV_BASE_URL = "SALESHANDY_BASE_URL"
ENV_STATE_DIR = "SHANDY_STATE_DIR"


@dataclass(frozen=True)
class Settings:
    api_key: str | None
    base_url: str
    state_dir: Path

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


def read_dotenv(path: Path, warn: bool = True) -> dict[str, str]:
    """Values from a ``.env`` file; warns when others can read a file that may hold the key."""
    if not path.is_file():
        return {}
    if warn and os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(
            f"shandy: warning: {path} is readable by group or others; run: chmod 600 {path}",
            file=sys.stderr,
        )
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(url: str) -> str:
    """Refuse anything but https, except plain http to a loopback host (the sandbox)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"base URL {url!r} is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigError(
            f"refusing plain-http base URL {url!r}: the API key would travel unencrypted; "
            "use https:// (plain http is allowed only to loopback)"
        )
    return url.rstrip("/")


def default_state_dir() -> Path:
    return Path(user_state_dir("shandy", appauthor=False))


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700: it holds prospects' data."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "posix":
        path.chmod(0o700)
    return path


def resolve_settings(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv_path: Path | None = None,
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
    return Settings(
        api_key=pick(api_key, ENV_API_KEY),
        base_url=url,
        state_dir=Path(state).expanduser() if state else default_state_dir(),
    )
