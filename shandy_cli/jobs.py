"""Named jobs (``shandy run NAME``, ``shandy jobs``): ``[jobs.NAME]`` tables of a
``shandy.toml`` holding ``shandy import`` options, checked before anything is sent.

A job's keys are the import's flags with ``_`` for ``-`` (``only_changed``,
``on_unknown_column``; the ``-`` spellings are accepted too), plus ``files`` (globs
allowed), ``map`` / ``set`` (inline tables) and ``profile``. Relative paths are the
toml's directory's, so cron can run a job from anywhere. A top-level ``[defaults]``
table is merged under every job (a job's key replaces the default's whole).

Every problem is an ``InputError`` (exit 2) naming the file, the job and the key.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from shandy_cli.config import resolve_settings
from shandy_cli.errors import InputError
from shandy_cli.exits import ExitCode
from shandy_cli.pipeline._readers.delimited import normalize_delimiter
from shandy_cli.pipeline.reporting import failures_beside, is_output_name
from shandy_cli.pipeline.results import ImportOptions, ImportResult
from shandy_cli.pipeline.run import import_files
from shandy_cli.pipeline.sources import normalize_encoding
from shandy_cli.redaction import one_line

DEFAULT_FILE = "shandy.toml"
MAX_JOBS_FILE_BYTES = 10_000_000  # a hand-written file; far past any real one
TOP_LEVEL = ("jobs", "defaults")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GLOB_CHARS = re.compile(r"[*?\[]")


class _Bad(Exception):
    """A value's problem, said without where: ``_build`` adds the file, job and key."""


@dataclass(frozen=True)
class _Ctx:
    base: Path  # the toml's directory: relative paths are its
    # What a glob never matches: the job's own output files and report folder.
    outputs: tuple[Path, ...] = ()


# -- one converter a kind of value: TOML value -> what ImportOptions holds ------------------


def _text(value: Any, ctx: _Ctx) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"must be a non-empty string, not {_shown(value)}")
    return value.strip()


def _flag(value: Any, ctx: _Ctx) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"must be true or false, not {_shown(value)}")
    return value


def _count(value: Any, ctx: _Ctx) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _Bad(f"must be a whole number, 1 or more, not {_shown(value)}")
    return value


def _seconds(value: Any, ctx: _Ctx) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"must be a number of seconds, not {_shown(value)}")
    if not 0 <= value < math.inf:
        raise _Bad(f"must be a finite number of seconds, zero or more, not {value!r}")
    return float(value)


def _texts(value: Any, ctx: _Ctx) -> tuple[str, ...]:
    """A list of strings; one string is a list of one."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise _Bad(f"must be a list of strings, not {_shown(value)}")
    return tuple(_text(item, ctx) for item in items)


def _path(value: Any, ctx: _Ctx) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"must be a path (a non-empty string), not {_shown(value)}")
    return ctx.base / Path(value).expanduser()  # an absolute path stays itself


def _input_file(value: Any, ctx: _Ctx) -> Path:
    path = _path(value, ctx)
    if path.is_dir():
        raise _Bad(f"{one_line(str(path))} is a directory, not a file")
    if not path.is_file():
        raise _Bad(f"{one_line(str(path))}: no such file")
    return path


def _input_files(value: Any, ctx: _Ctx) -> tuple[Path, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise _Bad(f"must be a list of files, not {_shown(value)}")
    return tuple(_input_file(item, ctx) for item in items)


def _output_file(value: Any, ctx: _Ctx) -> Path:
    path = _path(value, ctx)
    if path.is_dir():
        raise _Bad(f"{one_line(str(path))} is a directory, not a file")
    return path


def _output_dir(value: Any, ctx: _Ctx) -> Path:
    path = _path(value, ctx)
    if path.exists() and not path.is_dir():
        raise _Bad(f"{one_line(str(path))} is a file, not a directory")
    return path


def _columns(value: Any, ctx: _Ctx) -> dict[str, str]:
    """``map``: an inline table, Column = "Field Label"."""
    if not isinstance(value, dict):
        raise _Bad(f'must be a table of Column = "Field Label", not {_shown(value)}')
    out = {}
    for column, label in value.items():
        if not column.strip():
            raise _Bad("has a blank column name")
        if not isinstance(label, str) or not label.strip():
            raise _Bad(f"{column!r} must map to a field label (a string), not {_shown(label)}")
        out[column.strip()] = label.strip()
    return out


def _constants(value: Any, ctx: _Ctx) -> dict[str, str]:
    """``set``: "Field Label" = value; numbers and dates are sent as their text."""
    if not isinstance(value, dict):
        raise _Bad(f'must be a table of "Field Label" = value, not {_shown(value)}')
    out = {}
    for label, item in value.items():
        if not label.strip():
            raise _Bad("has a blank field label")
        out[label.strip()] = _constant(label, item)
    return out


def _constant(label: str, item: Any) -> str:
    if isinstance(item, str):
        return item.strip()
    if isinstance(item, float) and not math.isfinite(item):
        raise _Bad(f"{label!r} must be a finite number, not {item!r}")
    if isinstance(item, int | float) and not isinstance(item, bool):
        return str(item)
    if isinstance(item, dt.date | dt.time):  # datetime is a date
        return item.isoformat()
    raise _Bad(f"{label!r} must be a string, a number or a date, not {_shown(item)}")


def _choice(value: Any, ctx: _Ctx) -> str:
    if not isinstance(value, str):
        raise _Bad(f"must be a string, not {_shown(value)}")
    return value  # which strings: ImportOptions.check, the import's one home for it


def _encoding(value: Any, ctx: _Ctx) -> str:
    text = _text(value, ctx)
    normalize_encoding(text)  # its InputError is said with the key's name
    return text


def _delimiter(value: Any, ctx: _Ctx) -> str:
    if not isinstance(value, str):
        raise _Bad(f"must be a string, not {_shown(value)}")
    normalize_delimiter(value)  # its InputError is said with the key's name
    return value


# key -> (ImportOptions field, converter). ``files`` and ``profile`` are the job's own.
OPTION_KEYS: dict[str, tuple[str, Callable[[Any, _Ctx], Any]]] = {
    "step": ("step_id", _text),
    "sequence": ("sequence", _text),
    "step_number": ("step_number", _count),
    "mapping": ("mapping_file", _input_file),
    "map": ("column_map", _columns),
    "set": ("constants", _constants),
    "tags": ("tags", _texts),
    "conflict": ("conflict", _choice),
    "verify": ("verify", _flag),
    "on_unknown_column": ("on_unknown_column", _choice),
    "only_new": ("only_new", _flag),
    "only_changed": ("only_changed", _flag),
    "update_existing": ("update_existing", _flag),
    "suppress": ("suppress", _input_files),
    "timeout": ("timeout", _seconds),
    "wait": ("wait", _flag),
    "max_rows": ("max_rows", _count),
    "max_bytes": ("max_bytes", _count),
    "rejects": ("rejects", _output_file),
    "report_dir": ("report_dir", _output_dir),
    "sheet": ("sheet", _text),
    "member": ("member", _text),
    "encoding": ("encoding", _encoding),
    "delimiter": ("delimiter", _delimiter),
    "notify": ("notify", _texts),
    "notify_on": ("notify_on", _choice),
    "dry_run": ("dry_run", _flag),
    "force": ("force", _flag),
}
JOB_KEYS = ("files", "profile", *OPTION_KEYS)
ALIASES = {"tag": "tags", "step_id": "step", "mapping_file": "mapping"}
# Keys that name one choice: a job's (or the line's) key drops the defaults' others.
EXCLUSIVE = (("step", "sequence"), ("only_new", "only_changed"))
# The flag an ImportOptions.check message names -> the key a jobs file spells it.
_PLAIN = ImportOptions()  # the defaults a line flag of an exclusive pair resets to
_FLAG_KEYS = {"tag": "tags", "step": "step", "map": "map", "set": "set", "mapping": "mapping"}


@dataclass(frozen=True)
class Job:
    """One checked job: the files it reads (globs expanded: sorted, no repeats), the
    ``ImportOptions`` it runs with, and the account profile it names (None: the usual
    ``SHANDY_PROFILE`` / ``default``). ``keys``: the option keys it sets (``[defaults]``
    merged, paths resolved), as ``shandy jobs`` lists them."""

    name: str
    files: tuple[str, ...]
    options: ImportOptions
    profile: str | None
    keys: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """Where the job imports to, in words."""
        opts = self.options
        if opts.step_id:
            return f"step {opts.step_id}"
        if opts.sequence:
            return f"sequence {opts.sequence!r}, step {opts.step_number}"
        return "prospect list"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "step_id": self.options.step_id,
            "sequence": self.options.sequence,
            "step_number": self.options.step_number,
            "files": list(self.files),
            "profile": self.profile,
            "options": {k: _listed(k, v) for k, v in self.keys.items()},
        }


def _listed(key: str, value: Any) -> Any:
    """A job's value as ``shandy jobs`` may show it: webhook URLs masked (a Slack URL's
    path is its token), everything else as it is."""
    if key == "notify":
        from shandy_cli.notify import mask_url

        return [mask_url(str(url)) for url in value]
    return _jsonable(value)


@dataclass(frozen=True)
class JobsFile:
    """A parsed ``shandy.toml``: its path, defaults and raw job tables in file order."""

    path: Path
    tables: dict[str, dict[str, Any]]
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.tables)

    def job(self, name: str) -> Job:
        """The job ``name``, checked (``InputError`` naming the key at fault)."""
        if name not in self.tables:
            have = ", ".join(repr(n) for n in self.names) or "none"
            hint = _closest(name, self.names)
            raise InputError(f"no job {name!r}{hint}; the jobs are: {have}", file=str(self.path))
        return _build(self, name)

    def check_all(self) -> list[Job]:
        """Every job, checked, in file order: the first problem is an ``InputError``."""
        return [self.job(name) for name in self.names]


@dataclass(frozen=True)
class JobsResult:
    """What ``shandy jobs`` lists: every job of the file, each checked."""

    path: Path
    jobs: list[Job]
    exit_code: ExitCode = ExitCode.OK

    def to_dict(self) -> dict[str, Any]:
        return {"config": str(self.path), "jobs": [job.to_dict() for job in self.jobs]}


# -- loading ----------------------------------------------------------------------------------


def jobs_path(config: str | os.PathLike[str] | None = None) -> Path:
    """The jobs file: ``config`` (``--config``), else ``SHANDY_CONFIG`` (environment or
    ``.env``), else ``shandy.toml`` in the working directory."""
    chosen = resolve_settings(config=config, need_key=False).config_file
    return chosen if chosen is not None else Path(DEFAULT_FILE)


def load_jobs(config: str | os.PathLike[str] | None = None) -> JobsFile:
    """Read and parse the jobs file (``jobs_path``); jobs are checked when asked for
    (``JobsFile.job``, ``check_all``), so one bad job does not stop another's run."""
    path = jobs_path(config).absolute()  # cron mail says which file, whatever the cwd
    data = _read_toml(path)
    for key in data:
        if key not in TOP_LEVEL:
            raise InputError(f"unknown table {key!r}{_closest(key, TOP_LEVEL)}", file=str(path))
    jobs = data.get("jobs", {})
    if not isinstance(jobs, dict):
        raise InputError("'jobs' must be a table of [jobs.NAME] tables", file=str(path))
    for name, table in jobs.items():
        if _CONTROL.search(name) or not name.strip():
            raise InputError(f"job name {name!r} must be printable and not blank", file=str(path))
        if not isinstance(table, dict):
            raise InputError(f"job {name!r} must be a [jobs.NAME] table", file=str(path))
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise InputError("'defaults' must be a table", file=str(path))
    return JobsFile(path, dict(jobs), dict(defaults))


def list_jobs(config: str | os.PathLike[str] | None = None) -> JobsResult:
    """``shandy jobs``: every job of the jobs file, each checked."""
    jobs_file = load_jobs(config)
    return JobsResult(jobs_file.path, jobs_file.check_all())


def _read_toml(path: Path) -> dict[str, Any]:
    where = str(path)
    if path.is_dir():
        raise InputError("is a directory, not a jobs file", file=where)
    try:
        with path.open("rb") as fh:  # a cap: --config /dev/zero must not fill memory
            raw = fh.read(MAX_JOBS_FILE_BYTES + 1)
    except FileNotFoundError:
        raise InputError(
            "no such jobs file (give --config FILE or SHANDY_CONFIG, or create shandy.toml "
            "in the working directory)",
            file=where,
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read the jobs file: {exc.strerror or exc}", file=where) from None
    if len(raw) > MAX_JOBS_FILE_BYTES:
        raise InputError(f"larger than {MAX_JOBS_FILE_BYTES:,} bytes: not a jobs file", file=where)
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", file=where) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", file=where) from None
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        raise InputError("not valid TOML: nested too deeply", file=where) from None


# -- checking and building one job ----------------------------------------------------------


def _build(jobs_file: JobsFile, name: str) -> Job:
    where = f"job {name!r}"
    defaults = _normalized(jobs_file, jobs_file.defaults, "[defaults]")
    own = _normalized(jobs_file, jobs_file.tables[name], where)
    keys = merge_keys(defaults, own)
    ctx = _Ctx(jobs_file.path.parent)
    shown: dict[str, Any] = {}  # each option key as converted (paths resolved), for listing
    for key, value in keys.items():
        if key in OPTION_KEYS:
            shown[key] = _converted(jobs_file, where, key, OPTION_KEYS[key][1], value, ctx)
    options = ImportOptions(**{OPTION_KEYS[k][0]: v for k, v in shown.items()})
    _check(jobs_file, where, keys, options)
    ctx = replace(ctx, outputs=_outputs(options))
    files = _converted(jobs_file, where, "files", expand_files, keys.get("files"), ctx)
    profile = None
    if "profile" in keys:
        profile = _converted(jobs_file, where, "profile", _text, keys["profile"], ctx)
    return Job(name, files, options, profile, shown)


def _normalized(jobs_file: JobsFile, table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The table with each key in its canonical spelling; an unknown key, or one given
    twice (``only-new`` and ``only_new``), stops with the closest valid key."""
    out: dict[str, Any] = {}
    for raw, value in table.items():
        key = raw.replace("-", "_")
        key = ALIASES.get(key, key)
        if key not in JOB_KEYS:
            hint = _closest(key, JOB_KEYS) or f" (valid keys: {', '.join(JOB_KEYS)})"
            raise InputError(f"{where}: unknown key {raw!r}{hint}", file=str(jobs_file.path))
        if key in out:
            raise InputError(f"{where}: key {key!r} is given twice", file=str(jobs_file.path))
        out[key] = value
    return out


def merge_keys(under: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over``'s keys win over ``under``'s; a key of an exclusive pair (``step`` or
    ``sequence``, ``only_new`` or ``only_changed``) in ``over`` drops its partner from
    ``under``, so a job (or the command line) choosing one never clashes with a default."""
    merged = dict(under)
    for group in EXCLUSIVE:
        if any(k in over for k in group):
            for k in group:
                merged.pop(k, None)
    if "sequence" in over and "step_number" not in over:
        merged.pop("step_number", None)  # a default's step number was another sequence's
    merged.update(over)
    return merged


def _converted(
    jobs_file: JobsFile,
    where: str,
    key: str,
    convert: Callable[[Any, _Ctx], Any],
    value: Any,
    ctx: _Ctx,
) -> Any:
    try:
        return convert(value, ctx)
    except _Bad as exc:
        raise InputError(f"{where}: key {key!r} {exc}", file=str(jobs_file.path)) from None
    except InputError as exc:  # a shared check (delimiter, encoding) said with its flag
        raise InputError(
            f"{where}: key {key!r}: {_keyed(exc.detail)}", file=str(jobs_file.path)
        ) from None


def _check(jobs_file: JobsFile, where: str, keys: Mapping[str, Any], opts: ImportOptions) -> None:
    """``ImportOptions.check``, the import's own, with the keys named as a jobs file does."""
    if "step" in keys and "sequence" in keys:
        raise InputError(
            f"{where}: give key 'step' or 'sequence', not both", file=str(jobs_file.path)
        )
    try:
        replace(opts).check()  # check() normalises some fields: keep the job's as given
    except InputError as exc:
        raise InputError(f"{where}: {_keyed(exc.detail)}", file=str(jobs_file.path)) from None


def expand_files(value: Any, ctx: _Ctx) -> tuple[str, ...]:
    """``files``: paths and globs (``**`` too), relative to the toml's directory; matches
    sorted, repeats dropped; a glob skips directories and shandy's own outputs (rejects and
    failures files, the job's ``report_dir``). A glob matching no file, or a path that is
    missing or a directory, is an error. ``-`` (stdin) and ``https://`` links pass as they are."""
    if value is None:
        raise _Bad('is missing: give the files to import, e.g. files = ["exports/*.csv"]')
    patterns = _texts(value, ctx)
    if not patterns:
        raise _Bad("is empty: give the files to import")
    found: list[str] = []
    for pattern in patterns:
        found.extend(_expand_one(pattern, ctx))
    return tuple(dict.fromkeys(found))


def _expand_one(pattern: str, ctx: _Ctx) -> list[str]:
    if pattern == "-" or pattern.startswith(("https://", "http://")):
        return [pattern]
    if not _GLOB_CHARS.search(pattern):
        return [str(_input_path(pattern, ctx))]
    files = sorted(str(m) for m in _glob(pattern, ctx.base) if _importable(m, ctx))
    if not files:
        raise _Bad(f"{pattern!r} matches no file (in {one_line(str(ctx.base))})")
    return files


def _glob(pattern: str, base: Path) -> Iterator[Path]:
    """``pattern``'s matches under ``base`` (an absolute pattern: under its root).
    pathlib's, not ``glob.glob``'s: its ``**`` does not descend into symlinked folders,
    so a link back up (``a/up -> ..``) cannot make it walk for ever. Hidden names are
    matched only by a pattern that names a hidden part, as the shell does."""
    path = Path(os.path.expanduser(pattern))
    root = Path(path.anchor) if path.is_absolute() else base
    relative = path.relative_to(path.anchor) if path.is_absolute() else path
    hidden_ok = any(p.startswith(".") and p not in (".", "..") for p in relative.parts)
    for match in root.glob(str(relative)):
        parts = match.relative_to(root).parts
        if hidden_ok or not any(p.startswith(".") and p not in (".", "..") for p in parts):
            yield match


def _input_path(value: Any, ctx: _Ctx) -> Path:
    """A file to import named as it is: anything but a directory (a FIFO an export
    writes into is an input the import reads as a stream)."""
    path = _path(value, ctx)
    if path.is_dir():
        raise _Bad(f"{one_line(str(path))} is a directory, not a file")
    if not path.exists():
        raise _Bad(f"{one_line(str(path))}: no such file")
    return path


def _importable(path: Path, ctx: _Ctx) -> bool:
    """A glob's match that is an input: a file, not one shandy wrote (a rejects or
    failures file, anything in the job's ``report_dir``)."""
    if not path.is_file() or is_output_name(path):
        return False
    if not ctx.outputs:
        return True
    resolved = path.resolve()
    return not any(resolved == out or out in resolved.parents for out in ctx.outputs)


def _outputs(options: ImportOptions) -> tuple[Path, ...]:
    paths = [options.rejects, options.report_dir]
    if options.rejects is not None:
        paths.append(failures_beside(Path(options.rejects)))
    return tuple(Path(p).resolve() for p in paths if p is not None)


# -- applying the command line's flags --------------------------------------------------------


def with_overrides(job: Job, overrides: Mapping[str, Any]) -> Job:
    """The job with the command line's flags winning: ``overrides`` maps ``ImportOptions``
    fields to values given on the line (None: not given). ``--step`` drops the job's
    ``sequence`` (and back), ``--only-new`` its ``only_changed`` (and back); ``--map`` and
    ``--set`` win per column and label; lists (``--tag``, ``--suppress``, ``--notify``)
    replace the job's."""
    given = {k: v for k, v in overrides.items() if v is not None}
    names = {f.name for f in fields(ImportOptions)}
    unknown = set(given) - names
    if unknown:
        raise TypeError(f"not ImportOptions fields: {sorted(unknown)}")
    opts = job.options
    by_key = {attr: key for key, (attr, _) in OPTION_KEYS.items()}
    for group in EXCLUSIVE:
        attrs = [OPTION_KEYS[k][0] for k in group]
        if any(a in given for a in attrs):
            reset: dict[str, Any] = {a: getattr(_PLAIN, a) for a in attrs}
            opts = replace(opts, **reset)
    if "sequence" in given and "step_number" not in given:
        opts = replace(opts, step_number=1)
    for attr in ("column_map", "constants"):
        if attr in given:
            given[attr] = {**getattr(opts, attr), **given[attr]}
    opts = replace(opts, **given)
    keys = dict(job.keys)
    keys.update({by_key.get(a, a): _jsonable(v) for a, v in given.items()})
    return replace(job, options=opts, keys=keys)


# -- small helpers ------------------------------------------------------------------------


def _closest(word: str, choices: Iterable[str]) -> str:
    near = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _keyed(message: str) -> str:
    """An ``ImportOptions.check`` message with each ``--flag`` as the jobs file's key."""
    return re.sub(
        r"--([a-z][a-z-]*)",
        lambda m: _FLAG_KEYS.get(m.group(1), m.group(1).replace("-", "_")),
        message,
    )


def _shown(value: Any) -> str:
    kind = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), f"a {type(value).__name__}"
    )
    text = repr(value)
    return f"{kind} ({text[:40]}{'...' if len(text) > 40 else ''})"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return value


# -- running ------------------------------------------------------------------------------


def prepare_job(
    name: str,
    *,
    config: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Job:
    """The job ``name`` of the jobs file, checked, with ``overrides`` (``ImportOptions``
    fields given on the command line) winning over its keys."""
    return with_overrides(load_jobs(config).job(name), overrides or {})


def run_job(
    name: str,
    *,
    config: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    profile: str | None = None,
    **import_kwargs: Any,
) -> ImportResult:
    """Run the job ``name`` as ``shandy run NAME`` does: ``import_files`` over its files
    and options. ``profile`` wins over the job's; ``import_kwargs`` are
    ``import_files``'s own (``client=``, ``api_key=``, ``state_dir=``, ``listener=``)."""
    job = prepare_job(name, config=config, overrides=overrides)
    return import_files(job.files, job.options, profile=profile or job.profile, **import_kwargs)
