"""Account profiles (``shandy auth``): API keys kept in the OS keychain, or in a 0600 file
where no keychain works. ``config.resolve_settings`` asks ``stored_profile`` for a
profile's key and base URL when no flag, environment variable or ``.env`` gives them.

On disk, in the user config directory (``SHANDY_CONFIG_DIR`` overrides it):

- ``profiles.json``: the index (keyring cannot list what it holds): each profile's
  name, base URL and where its key is kept. Never a key.
- ``credentials.json`` (0600): the keys of profiles kept in the file, where no keychain
  works (a headless server, cron) or ``--store file`` asked for it.

Both are written atomically, 0600, under a file lock, in a directory created 0700.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from shandy_cli._files import ensure_private_dir, private_output
from shandy_cli._lock import exclusive
from shandy_cli.errors import ApiError, ConfigError
from shandy_cli.exits import ExitCode
from shandy_cli.redaction import mask_secret, one_line, register_secret

if TYPE_CHECKING:  # keyring costs ~80 ms to import: only a command that needs it pays
    from keyring.backend import KeyringBackend

DEFAULT_PROFILE = "default"
SERVICE = "shandy"  # the keychain entry: service "shandy", user name = the profile's name
ENV_CONFIG_DIR = "SHANDY_CONFIG_DIR"
ENV_BASE_URL = "SALESHANDY_BASE_URL"  # config's name; config imports this module
INDEX_FILE = "profiles.json"
KEYS_FILE = "credentials.json"
STORES = ("auto", "keychain", "file")
# A name is a key in a JSON file and a keychain user name, never a path; the rule keeps it
# one readable word in every message and table.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
log = logging.getLogger(__name__)
CHECK_TIMEOUT = 15.0  # seconds: login and status make one cheap call, not an import's


class StoredProfile:
    """What a profile holds: its key (never printed: ``redaction.mask_secret``), an
    optional base URL, and where the key is kept (``keychain (...)`` or the file's path).

    The key is read when first asked for (``load``): ``resolve_settings`` asks for the
    base URL on every command, and a keychain read is slow or may prompt."""

    def __init__(
        self,
        name: str,
        api_key: str | None = None,
        base_url: str | None = None,
        where: str = "",
        *,
        load: Callable[[], str | None] | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url
        self.where = where
        self._key = api_key
        self._load = load

    @property
    def api_key(self) -> str | None:
        if self._load is not None:
            self._key, self._load = self._load(), None
            register_secret(self._key)
        return self._key

    def __repr__(self) -> str:  # never the key, even in a traceback
        return (
            f"StoredProfile(name={self.name!r}, base_url={self.base_url!r}, where={self.where!r})"
        )


def check_name(name: str) -> str:
    """A profile name: letters, digits, ``.``, ``_``, ``-``; up to 64, starting with a
    letter or digit. Anything else (``../x``, a newline, 1000 characters) is refused."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = one_line(str(name))
        shown = shown if len(shown) <= 40 else shown[:40] + "..."
        raise ConfigError(
            f"profile name {shown!r} is not allowed: use up to 64 letters, digits, '.', "
            "'_' or '-', starting with a letter or digit"
        )
    return name


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where profiles are kept: ``SHANDY_CONFIG_DIR``, or the platform's user config
    directory (``~/.config/shandy`` on Linux; ``XDG_CONFIG_HOME`` honoured)."""
    env = os.environ if environ is None else environ
    chosen = _setting(ENV_CONFIG_DIR, env)
    if chosen:  # as every setting: the environment, then .env in the working directory
        return Path(chosen).expanduser()
    xdg = env.get("XDG_CONFIG_HOME")
    if os.name == "posix" and os.uname().sysname != "Darwin" and xdg:
        return Path(xdg).expanduser() / "shandy"
    from platformdirs import user_config_dir

    return Path(user_config_dir("shandy", appauthor=False))


# -- the keychain -----------------------------------------------------------------------


def keychain(environ: Mapping[str, str] | None = None) -> KeyringBackend | None:
    """The OS keychain, through keyring, or None where none works (keyring's fail or
    null backend: a headless server, cron). ``PYTHON_KEYRING_BACKEND`` picks one, as
    keyring itself reads it; looked up on each call, not cached, so a test's or a
    caller's environment decides."""
    import keyring.core
    from keyring.backends import fail, null

    env = os.environ if environ is None else environ
    name = env.get("PYTHON_KEYRING_BACKEND")
    try:
        backend = keyring.core.load_keyring(name) if name else keyring.get_keyring()
    except Exception:  # a backend that cannot be loaded is one that does not work here
        return None
    if isinstance(backend, fail.Keyring | null.Keyring):
        return None
    if getattr(backend, "backends", None) == []:  # a chainer with nothing to chain
        return None
    return backend


def backend_name(backend: KeyringBackend) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _backend_for(entry: Mapping[str, Any], environ: Mapping[str, str]) -> KeyringBackend:
    """The keychain a profile's key was stored in (by class name), or the current one."""
    import keyring.core

    recorded = entry.get("backend")
    if isinstance(recorded, str) and recorded:
        with contextlib.suppress(Exception):
            return keyring.core.load_keyring(recorded)
    backend = keychain(environ)
    if backend is None:
        raise ConfigError("no keychain works here")
    return backend


# -- the files --------------------------------------------------------------------------


@dataclass
class Store:
    """The index, the key file and the keychain of one config directory."""

    root: Path
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @classmethod
    def at(cls, environ: Mapping[str, str] | None = None) -> Store:
        env = os.environ if environ is None else environ
        return cls(config_dir(env), env)

    @property
    def index_path(self) -> Path:
        return self.root / INDEX_FILE

    @property
    def keys_path(self) -> Path:
        return self.root / KEYS_FILE

    def profiles(self) -> dict[str, dict[str, Any]]:
        """The index: name -> {"base_url", "store", "backend", "saved_at"}."""
        data = _read_json(self.index_path)
        found = data.get("profiles", {})
        if not isinstance(found, dict):
            raise ConfigError(f"{self.index_path} is damaged: 'profiles' is not a table")
        return {k: v for k, v in found.items() if isinstance(v, dict) and _NAME.fullmatch(k)}

    def file_keys(self) -> dict[str, str]:
        data = _read_json(self.keys_path)
        return {k: v for k, v in data.items() if isinstance(v, str)}

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One writer at a time: two logins at once must not lose either's entry."""
        ensure_private_dir(self.root)
        with exclusive(self.root / ".lock"):  # portable: no fcntl on Windows
            yield

    def write_index(self, profiles: Mapping[str, Any]) -> None:
        _write_json(self.index_path, {"version": 1, "profiles": dict(sorted(profiles.items()))})

    def write_keys(self, keys: Mapping[str, str]) -> None:
        if keys:
            _write_json(self.keys_path, dict(sorted(keys.items())))
        else:
            self.keys_path.unlink(missing_ok=True)

    def read_key(self, name: str, entry: Mapping[str, Any]) -> str | None:
        """The profile's key from wherever the index says it is kept."""
        if entry.get("store") == "file":
            return self.file_keys().get(name)
        try:
            return _backend_for(entry, self.environ).get_password(SERVICE, name)
        except Exception as exc:  # a locked keychain, no D-Bus under cron, ...
            raise ConfigError(
                f"profile {name}: its key is kept in the keychain and cannot be read here "
                f"({_why(exc)}); where no keychain works (cron), run: shandy auth login "
                f"--profile {name} --store file"
            ) from None

    def where(self, name: str, entry: Mapping[str, Any]) -> str:
        if entry.get("store") == "file":
            return str(self.keys_path)
        return f"keychain ({_short(str(entry.get('backend') or 'keyring'))})"


def _short(backend: str) -> str:
    """``keyring.backends.macOS.Keyring`` -> ``macOS``; another class keeps its own name."""
    parts = backend.split(".")
    return parts[-2] if len(parts) > 1 and parts[-1] == "Keyring" else parts[-1]


def _why(exc: BaseException) -> str:
    return one_line(str(exc) or type(exc).__name__)[:200]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError:
        raise ConfigError(
            f"{path} is damaged (not JSON); remove it and run shandy auth login again"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is damaged (not a JSON object)")
    return data


def _write_json(path: Path, data: Any) -> None:
    try:
        with private_output(path, "wb") as fh:
            fh.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())  # a key must survive a crash right after "saved"
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


# -- the seam config.resolve_settings uses ---------------------------------------------


def stored_profile(name: str, environ: Mapping[str, str]) -> StoredProfile | None:
    """The stored profile ``name``, or None when there is none (the ``default`` profile
    never made). A profile named on purpose (``--profile``, ``SHANDY_PROFILE``) that does
    not exist is a warning, once its key is needed: a key from the flag, the environment
    or ``.env`` wins and never asks. Only the index is read here; the key when first
    asked for."""
    check_name(name)
    store = Store.at(environ)
    entry = store.profiles().get(name)  # no index (a fresh HOME): one failed open
    if entry is None:
        if name == DEFAULT_PROFILE:
            return None
        return StoredProfile(name, load=lambda: _missing(name, store.root))
    base_url = entry.get("base_url") if isinstance(entry.get("base_url"), str) else None

    def load() -> str | None:
        try:
            key = store.read_key(name, entry)
        except ConfigError as exc:  # a locked keychain must not stop `shandy runs`
            _warn_once(name, store.root, exc.detail)
            return None
        if not key:
            _warn_once(
                name,
                store.root,
                f"profile {name}: its key is gone from {store.where(name, entry)}; run: "
                f"shandy auth login --profile {name}",
            )
        return key or None

    return StoredProfile(name, base_url=base_url, where=store.where(name, entry), load=load)


_WARNED: set[tuple[str, Path]] = set()


def forget_warnings() -> None:
    """Warn again about a missing profile (each CLI invocation warns once)."""
    _WARNED.clear()


def _missing(name: str, root: Path) -> None:
    """A profile named on purpose that does not exist, or whose key cannot be read: said
    once, as a warning (the command may need no key: ``shandy runs``); one that needs a
    key then stops with the usual "no API key" (exit 3)."""
    _warn_once(
        name,
        root,
        f"no profile {name!r} in {root}: run shandy auth login --profile {name} "
        "(shandy auth status lists the profiles)",
    )


def _warn_once(name: str, root: Path, message: str) -> None:
    if (name, root) not in _WARNED:
        _WARNED.add((name, root))
        log.warning("%s", message)


# -- login, status, logout --------------------------------------------------------------


@dataclass
class LoginResult:
    """``shandy auth login``: which profile was saved, and where its key is kept."""

    profile: str
    store: str  # "keychain" | "file"
    where: str
    key: str | None  # masked
    base_url: str | None
    note: str | None = None  # why the file, when no keychain works
    exit_code: ExitCode = ExitCode.OK
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "store": self.store,
            "where": self.where,
            "key": self.key,
            "base_url": self.base_url,
            "note": self.note,
        }


def verify_key(api_key: str, base_url: str | None) -> None:
    """One cheap call (``GET /v1/fields``) with the key: ``AuthenticationError`` (exit 3)
    if it is refused, ``ApiError`` (exit 4) if the API cannot be reached."""
    from shandy_cli.client import RetryPolicy, SaleshandyClient
    from shandy_cli.config import DEFAULT_BASE_URL, check_base_url

    url = check_base_url(base_url or DEFAULT_BASE_URL)
    quick = RetryPolicy(attempts=2, max_delay=2.0, max_total=CHECK_TIMEOUT)
    with SaleshandyClient(url, api_key, timeout=CHECK_TIMEOUT, retry=quick) as client:
        client.list_fields()


def login(
    name: str,
    api_key: str,
    *,
    base_url: str | None = None,
    store: str = "auto",
    environ: Mapping[str, str] | None = None,
    verify: bool = True,
) -> LoginResult:
    """Check ``api_key`` with one call, then keep it for profile ``name``: in the OS
    keychain, or (``store="file"``, or where no keychain works) in the 0600 key file.
    Nothing is stored if the key is refused or the API cannot be reached."""
    from shandy_cli.config import check_base_url
    from shandy_cli.redaction import check_api_key

    check_name(name)
    if store not in STORES:
        raise ConfigError(f"--store must be one of {', '.join(STORES)}, not {store!r}")
    key = check_api_key(api_key)
    if not key:
        raise ConfigError("no API key given (an empty line); nothing was stored")
    env = os.environ if environ is None else environ
    given = base_url or _setting(ENV_BASE_URL, env)  # the URL the key is checked (and kept) at
    url = check_base_url(given) if given else None
    if verify:
        verify_key(key, url)
    files = Store.at(env)
    with files.locked():
        entries = files.profiles()  # a damaged index stops the login before the key is kept
        new = name not in entries
        kept, note = _keep(files, name, key, store)
        entries[name] = {"base_url": url, "saved_at": int(time.time()), **kept}
        try:
            files.write_index(entries)
        except ConfigError:  # a full disk: no new profile's key left where nothing lists it
            if new:
                _forget_key(files, name, kept)
            raise
    return LoginResult(
        profile=name,
        store=kept["store"],
        where=files.where(name, kept),
        key=mask_secret(key),
        base_url=url,
        note=note,
    )


def _keep(files: Store, name: str, key: str, store: str) -> tuple[dict[str, str], str | None]:
    """Put the key in the keychain (or the file), and take it out of the other, so a
    profile's key is in exactly one place."""
    backend = None if store == "file" else keychain(files.environ)
    note = None
    if backend is not None:
        try:
            backend.set_password(SERVICE, name, key)
        except Exception as exc:  # a keychain that exists but refuses (locked, no D-Bus)
            if store == "keychain":
                raise ConfigError(f"the keychain refused the key: {_why(exc)}") from None
            note = f"the keychain refused the key ({_why(exc)})"
            backend = None
        else:
            _drop_file_key(files, name)
            return {"store": "keychain", "backend": backend_name(backend)}, None
    if store == "keychain":
        raise ConfigError("no keychain works here; use --store file (a 0600 file)")
    keys = files.file_keys()
    keys[name] = key
    files.write_keys(keys)
    _drop_keychain_key(files, name)
    reason = note or "no keychain works here"
    return {"store": "file"}, f"{reason}: the key is kept in {files.keys_path} (mode 0600)"


def _forget_key(files: Store, name: str, kept: Mapping[str, Any]) -> None:
    with contextlib.suppress(Exception):  # best effort: the error being raised says why
        if kept.get("store") == "file":
            _drop_file_key(files, name)
        else:
            _drop_keychain_key(files, name, kept)


def _drop_file_key(files: Store, name: str) -> bool:
    keys = files.file_keys()
    if name not in keys:
        return False
    del keys[name]
    files.write_keys(keys)
    return True


def _drop_keychain_key(files: Store, name: str, entry: Mapping[str, Any] | None = None) -> bool:
    try:
        backend = _backend_for(entry or {}, files.environ)
        if backend.get_password(SERVICE, name) is None:
            return False
        backend.delete_password(SERVICE, name)
    except Exception:  # no keychain: nothing of ours is in it
        return False
    return True


@dataclass
class LogoutResult:
    profile: str
    removed: list[str]  # where a key was removed from
    exit_code: ExitCode = ExitCode.OK
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "removed": self.removed}


def logout(name: str, *, environ: Mapping[str, str] | None = None) -> LogoutResult:
    """Remove profile ``name``: its key from the keychain and the file, its index entry.
    A profile that does not exist is an error (exit 2): a script that logs out a typo
    should hear of it."""
    check_name(name)
    files = Store.at(environ)
    removed: list[str] = []
    with files.locked():
        entries = files.profiles()
        entry = entries.pop(name, None)
        if _drop_keychain_key(files, name, entry):
            removed.append(files.where(name, entry or {"store": "keychain"}))
        if _drop_file_key(files, name):
            removed.append(str(files.keys_path))
        if entry is None and not removed:
            raise ConfigError(f"no profile {name!r} (shandy auth status lists the profiles)")
        files.write_index(entries)
    return LogoutResult(name, removed)


@dataclass
class ProfileState:
    """One profile in ``shandy auth status``."""

    name: str
    store: str
    where: str
    key: str | None  # masked
    base_url: str | None
    works: bool | None  # None: not checked (--offline), or no key to check
    problem: str | None = None
    exit_code: int = ExitCode.OK  # what this profile's problem makes the command exit with

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "store": self.store,
            "where": self.where,
            "key": self.key,
            "base_url": self.base_url,
            "works": self.works,
            "problem": self.problem,
        }


@dataclass
class AuthStatus:
    """``shandy auth status``: every profile, the one in use, and which key wins."""

    profiles: list[ProfileState]
    in_use: str
    key_source: str | None  # what the commands would use now: "SALESHANDY_API_KEY", ...
    config_dir: str
    checked: bool
    exit_code: ExitCode = ExitCode.OK
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "profiles": [p.to_dict() for p in self.profiles],
            "in_use": self.in_use,
            "key_source": self.key_source,
            "overridden": self.overridden,
            "config_dir": self.config_dir,
            "checked": self.checked,
            "exit_code": int(self.exit_code),
        }

    @property
    def overridden(self) -> bool:
        """A key from ``--api-key``, ``SALESHANDY_API_KEY`` or ``.env`` wins over the
        profile in use."""
        return self.key_source is not None and not self.key_source.startswith("profile ")


def auth_status(
    *,
    only: str | None = None,
    in_use: str = DEFAULT_PROFILE,
    key_source: str | None = None,
    check: bool = True,
    environ: Mapping[str, str] | None = None,
) -> AuthStatus:
    """Every stored profile (or ``only``), where its key is kept (masked), and, with
    ``check``, whether it works (one call each). Exit 3 if a key is refused, else 4 if
    one could not be checked for the network, else 0."""
    files = Store.at(environ)
    entries = files.profiles()
    if only is not None:
        check_name(only)
        if only not in entries:
            raise ConfigError(f"no profile {only!r} (shandy auth status lists the profiles)")
        entries = {only: entries[only]}
    states = [_state(files, name, entry, check) for name, entry in sorted(entries.items())]
    return AuthStatus(
        profiles=states,
        in_use=in_use,
        key_source=key_source,
        config_dir=str(files.root),
        checked=check,
        exit_code=_status_code(states),
    )


def _state(files: Store, name: str, entry: Mapping[str, Any], check: bool) -> ProfileState:
    base_url = entry.get("base_url") if isinstance(entry.get("base_url"), str) else None
    state = ProfileState(
        name=name,
        store=str(entry.get("store", "keychain")),
        where=files.where(name, entry),
        key=None,
        base_url=base_url,
        works=None,
    )
    try:
        key = files.read_key(name, entry)
    except ConfigError as exc:
        state.problem, state.exit_code = exc.detail, exc.exit_code
        return state
    register_secret(key)
    state.key = mask_secret(key)
    if not key:
        state.problem = "the key is missing; run shandy auth login --profile " + name
        state.exit_code = ExitCode.USAGE
    elif check:
        try:
            verify_key(key, base_url)
            state.works = True
        except (ApiError, ConfigError) as exc:  # refused (3), unreachable (4), a bad URL (2)
            state.works = False if exc.exit_code == ExitCode.AUTH else None
            state.problem, state.exit_code = exc.message, exc.exit_code
    return state


def _status_code(states: list[ProfileState]) -> ExitCode:
    """3 if a key is refused; else the first other problem's code (4 unreachable, 2 a key
    that cannot be read); else 0."""
    if any(s.works is False for s in states):
        return ExitCode.AUTH
    codes = [s.exit_code for s in states if s.exit_code]
    return ExitCode(codes[0]) if codes else ExitCode.OK


def _setting(name: str, environ: Mapping[str, str]) -> str | None:
    """A setting from the environment, then ``.env`` in the working directory."""
    from shandy_cli.config import read_dotenv

    return environ.get(name) or read_dotenv(Path(".env"), warn=False).get(name) or None


def profile_name(flag: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The profile ``auth login``/``logout`` act on: the flag, else ``SHANDY_PROFILE``
    (environment, then ``.env``), else ``default``: the order ``resolve_settings`` uses,
    without resolving a key that a profile about to be made cannot have yet."""
    env = os.environ if environ is None else environ
    return check_name(flag or _setting("SHANDY_PROFILE", env) or DEFAULT_PROFILE)
