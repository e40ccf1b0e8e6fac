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

from shandy_cli._version import __version__
from shandy_cli.client import ImportStatus, RetryPolicy, SaleshandyClient
from shandy_cli.config import Settings, resolve_settings
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
