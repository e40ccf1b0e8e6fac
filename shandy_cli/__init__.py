"""shandy: bulk-import prospects into Saleshandy sequences.

The import pipeline is a library; the ``shandy`` command is a thin layer over it::

    from shandy_cli import import_files

    result = import_files(["leads.csv"], step_id="StepA1", tags=["webinar"])
    print(result.rows_submitted, result.rows_rejected, result.exit_code)

Everything raised on purpose is a ``ShandyError`` (see ``shandy_cli.errors``); every
result's ``exit_code`` is an ``ExitCode``. The library never prints: it logs to the
``shandy_cli`` logger hierarchy (retries, warnings, a run's notices), silent until the
caller configures logging, as httpx does.
"""

import logging as _logging
import typing as _typing
from importlib import import_module as _import_module

from shandy_cli._version import __version__
from shandy_cli.errors import (
    ApiError,
    ApiValidationError,
    AuthenticationError,
    ConfigError,
    FaultError,
    ImportTimeout,
    InputError,
    Interrupted,
    RateLimitError,
    RequestTooLargeError,
    RowsFailed,
    ServerError,
    ShandyError,
    TransportError,
)
from shandy_cli.exits import ExitCode

# The rest is loaded on first use (PEP 562): the client pulls in httpx and the pipeline
# its readers, and every ``shandy`` command, ``--version`` too, imports this package
# first. Type checkers read the real imports below.
_LAZY = {
    "ImportStatus": "shandy_cli.client",
    "RetryPolicy": "shandy_cli.client",
    "SaleshandyClient": "shandy_cli.client",
    "Settings": "shandy_cli.config",
    "resolve_settings": "shandy_cli.config",
    "Job": "shandy_cli.jobs",
    "JobsFile": "shandy_cli.jobs",
    "JobsResult": "shandy_cli.jobs",
    "list_jobs": "shandy_cli.jobs",
    "load_jobs": "shandy_cli.jobs",
    "run_job": "shandy_cli.jobs",
    "ChunkResult": "shandy_cli.pipeline.run",
    "ImportOptions": "shandy_cli.pipeline.run",
    "ImportResult": "shandy_cli.pipeline.run",
    "import_files": "shandy_cli.pipeline.run",
    "resume_import": "shandy_cli.pipeline.run",
    "TraceEntry": "shandy_cli.pipeline.trace",
    "TraceResult": "shandy_cli.pipeline.trace",
    "trace": "shandy_cli.pipeline.trace",
    "preview_file": "shandy_cli.preview",
    "RequestStatus": "shandy_cli.status",
    "StatusResult": "shandy_cli.status",
    "check_status": "shandy_cli.status",
}

if _typing.TYPE_CHECKING:
    from shandy_cli.client import ImportStatus, RetryPolicy, SaleshandyClient
    from shandy_cli.config import Settings, resolve_settings
    from shandy_cli.jobs import Job, JobsFile, JobsResult, list_jobs, load_jobs, run_job
    from shandy_cli.pipeline.run import (
        ChunkResult,
        ImportOptions,
        ImportResult,
        import_files,
        resume_import,
    )
    from shandy_cli.pipeline.trace import TraceEntry, TraceResult, trace
    from shandy_cli.preview import preview_file
    from shandy_cli.status import RequestStatus, StatusResult, check_status


def __getattr__(name: str) -> object:
    """Import a public name's module the first time the name is asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ApiError",
    "ApiValidationError",
    "AuthenticationError",
    "ChunkResult",
    "ConfigError",
    "ExitCode",
    "FaultError",
    "ImportOptions",
    "ImportResult",
    "ImportStatus",
    "ImportTimeout",
    "InputError",
    "Interrupted",
    "Job",
    "JobsFile",
    "JobsResult",
    "RateLimitError",
    "RequestStatus",
    "RequestTooLargeError",
    "RetryPolicy",
    "RowsFailed",
    "SaleshandyClient",
    "ServerError",
    "Settings",
    "ShandyError",
    "StatusResult",
    "TraceEntry",
    "TraceResult",
    "TransportError",
    "__version__",
    "check_status",
    "import_files",
    "list_jobs",
    "load_jobs",
    "preview_file",
    "resolve_settings",
    "resume_import",
    "run_job",
    "trace",
]

_logging.getLogger(__name__).addHandler(_logging.NullHandler())
