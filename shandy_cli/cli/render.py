"""How results look: rich live progress on a terminal, timestamped lines elsewhere, and
one renderer per command's result (``render_result``; ``conclude`` renders and exits).

Progress goes to stderr; the summary table (or JSON) to stdout. Off a TTY
there are no ANSI codes, so cron mail and log files stay readable.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from shandy_cli.cli.common import GLOBALS, fail, print_json, safe_text, stdout_console, warn
from shandy_cli.pipeline.events import ChunkEvent, Event, Notice, Phase, ReadProgress
from shandy_cli.redaction import one_line

# The result types are named here for the type checker only. Each renderer is found by
# its result's class name (``_renders``), so `shandy status` does not import the import
# pipeline, the preview's readers or the trace store just to render a table of requests
# (issue 16, start-up); a test checks every name resolves to a real class.
if TYPE_CHECKING:
    from rich.progress import TaskID

    from shandy_cli.catalog import FieldsResult, SequencesResult
    from shandy_cli.pipeline.housekeeping import PruneResult
    from shandy_cli.pipeline.results import ImportResult
    from shandy_cli.pipeline.runs import RunsResult
    from shandy_cli.pipeline.trace import TraceResult
    from shandy_cli.preview import PreviewResult
    from shandy_cli.status import RequestStatus, StatusResult

R = TypeVar("R", bound=Callable[[Any, bool], None])


class PlainProgress:
    """Timestamped lines on stderr, throttled so a million rows are a handful of lines."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self._last = 0.0

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def line(self, text: str) -> None:
        if not GLOBALS.quiet:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            print(f"{stamp} shandy: {safe_text(text)}", file=sys.stderr, flush=True)

    def __call__(self, event: Event) -> None:
        if isinstance(event, ReadProgress):
            now = time.monotonic()
            if event.done or now - self._last >= self.every:
                self._last = now
                total = f" of {event.bytes_total:,} bytes" if event.bytes_total else ""
                state = "read" if event.done else "reading"
                self.line(f"{state} {one_line(event.file)}: {event.rows:,} rows{total}")
        elif isinstance(event, Phase):
            total = f" ({event.total} chunk(s))" if event.total else ""
            self.line(f"{event.name}{total}")
        elif isinstance(event, ChunkEvent):
            if event.state in ("planned", "sending") and not GLOBALS.verbose:
                return
            rid = f" request {event.request_id}" if event.request_id else ""
            # 0 rows: a request `status` was given that no import here sent
            rows = f" ({event.rows:,} rows)" if event.rows else ""
            self.line(f"chunk {event.index + 1}: {event.state}{rid}{rows}")
        elif isinstance(event, Notice):
            if event.level == "warning":
                if not GLOBALS.quiet:
                    print(f"shandy: warning: {safe_text(event.text)}", file=sys.stderr, flush=True)
            else:
                self.line(event.text)


class LiveProgress:
    """rich progress bars: reading (rows, rate, ETA on bytes), submitting, processing."""

    def __init__(self) -> None:
        # here, not at the top: only a terminal's import draws bars
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self.states: dict[int, str] = {}
        self.started = time.monotonic()

    def __enter__(self) -> LiveProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _task(self, key: str, description: str, total: float | None) -> TaskID:
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(description, total=total, detail="")
        return self.tasks[key]

    def __call__(self, event: Event) -> None:
        if isinstance(event, ReadProgress):
            self._read(event)
        elif isinstance(event, Phase) and event.name in ("submitting", "processing"):
            self._task(event.name, event.name, event.total)
        elif isinstance(event, ChunkEvent):
            self._chunk(event)
        elif isinstance(event, Notice):
            style = "yellow" if event.level == "warning" else "dim"
            self.console.print(Text(safe_text(event.text), style=style))

    def _read(self, event: ReadProgress) -> None:
        name = escape(safe_text(one_line(event.file)))
        task = self._task(f"read:{event.file}", f"reading {name}", event.bytes_total)
        rate = event.rows / max(time.monotonic() - self.started, 1e-6)
        detail = f"{event.rows:,} rows {rate:,.0f}/s"
        if event.done:
            total = event.bytes_total or event.bytes_read or 1
            self.progress.update(task, total=total, completed=total, detail=detail)
        else:
            self.progress.update(task, completed=event.bytes_read, detail=detail)

    def _chunk(self, event: ChunkEvent) -> None:
        self.states[event.index] = event.state
        if "submitting" in self.tasks:
            sent = sum(s in ("accepted", "completed", "failed") for s in self.states.values())
            self.progress.update(self.tasks["submitting"], completed=sent, detail=f"{sent} sent")
        if "processing" in self.tasks:
            done = sum(s in ("completed", "failed") for s in self.states.values())
            busy = sum(s == "accepted" for s in self.states.values())
            self.progress.update(
                self.tasks["processing"], completed=done, detail=f"{done} done, {busy} processing"
            )


def cell(value: Any) -> Text:
    """A table cell shown exactly as the text is: values from files are not rich markup,
    and a newline in a file name does not make a row of its own."""
    if isinstance(value, list):  # several lines, each shown as its text is
        return Text("\n".join(safe_text(one_line(str(line))) for line in value))
    return Text(safe_text(one_line(str(value))))


def progress_for(json_out: bool) -> PlainProgress | LiveProgress:
    if sys.stderr.isatty() and not GLOBALS.quiet:
        return LiveProgress()
    return PlainProgress()


def summary_table(result: ImportResult) -> Table:
    title = "dry run (nothing sent)" if result.dry_run else f"run {result.run_id}"
    table = Table("", "", title=title, show_header=False)
    target = result.step_id or "prospect list"
    rows: list[tuple[str, Any]] = [
        ("target", target),
        ("files", ", ".join(result.files)),
        ("rows read", f"{result.rows_read:,}"),
        ("submitted", f"{result.rows_submitted:,}"),
        *([("of them updates", f"{result.rows_updated:,}")] if result.rows_updated else []),
        ("rejected here", f"{result.rows_rejected:,}"),
        ("skipped", f"{result.rows_skipped:,}"),
        ("failed at Saleshandy", f"{result.rows_failed:,}"),
        ("already in the sequence", f"{result.rows_already_present:,}"),
        ("chunks", _chunks_text(result.chunks)),
        ("completed", "yes" if result.completed else "no"),
    ]
    if result.rejects_file:
        rows.append(("rejects file", result.rejects_file))
    if result.failures_file:
        rows.append(("failures file", result.failures_file))
    if result.resumed:
        rows.append(("resumed", f"yes: {result.chunks_sent} chunk(s) sent in this attempt"))
    if result.already_imported:
        rows.append(("already imported", "yes: nothing sent (--force imports again)"))
    for label, value in rows:
        table.add_row(label, cell(value))
    return table


def already_present_note(result: ImportResult) -> str | None:
    """Why rows already in the sequence count (or not) against the exit code, and what to do."""
    from shandy_cli.pipeline.outcome import already_present_fails

    n = result.rows_already_present
    if not n:
        return None
    if not already_present_fails(result.conflict):
        return (
            f"{n:,} row(s) were already in the sequence: left as they were, as --conflict "
            "noUpdate asks (not a failure)."
        )
    return (
        f"{n:,} row(s) were already in the sequence: a step import never updates them "
        f"(Saleshandy), so --conflict {result.conflict} did not change them; they are in the "
        "failures file. To update their fields, import the file again with "
        "--update-existing (those rows then go to the account-level import, which updates "
        "prospects by email)."
    )


def _chunks_text(chunks: list[Any]) -> str | list[str]:
    """A few chunks are listed, a line each, with their request ids; many are counted by
    state."""
    if not chunks:
        return "none"
    if len(chunks) <= 3:
        return [
            f"#{c.index + 1}: {c.rows:,} rows{' (updates)' if c.update else ''}, {c.state}"
            + (f" (request {c.request_id})" if c.request_id else "")
            for c in chunks
        ]
    states = Counter(c.state for c in chunks)
    return f"{len(chunks)}: " + ", ".join(f"{n} {state}" for state, n in states.items())


def reasons_table(reasons: list[tuple[str, int]], limit: int = 10) -> Table | None:
    if not reasons:
        return None
    table = Table("rows", "reason", title="top reasons rows did not land")
    for reason, count in reasons[:limit]:
        table.add_row(f"{count:,}", cell(reason))
    return table


def status_table(results: list[RequestStatus]) -> Table:
    table = Table("request id", "completed", "failed rows", "already in sequence", "report")
    for r in results:
        done = "yes" if r.completed else "no"
        failed, present = _count(r.failed_rows), _count(r.already_present_rows)
        table.add_row(cell(r.request_id), done, failed, present, cell(r.report_file or ""))
    return table


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


# -- one renderer per command's result ------------------------------------------------------


def conclude(result: Any, json_out: bool) -> NoReturn:
    """Render a command's result and exit with its code (an error said as one line)."""
    render_result(result, json_out)
    error = getattr(result, "error", None)
    if error:
        raise fail(error, result.exit_code)
    raise typer.Exit(int(result.exit_code))


# "module.Class" of a result -> its renderer
RENDERERS: dict[str, Callable[[Any, bool], None]] = {}


def renders(result_type: str | type) -> Callable[[R], R]:
    """Register the renderer of a result class: the class itself where its module is
    loaded anyway, else its name ("module.Class"), so that it is imported only when a
    command returns one."""
    name = result_type if isinstance(result_type, str) else _type_name(result_type)

    def register(func: R) -> R:
        RENDERERS[name] = func
        return func

    return register


def _type_name(klass: type) -> str:
    return f"{klass.__module__}.{klass.__qualname__}"


def render_result(result: Any, json_out: bool) -> None:
    """Render ``result`` with the renderer of its class (or of the nearest base class)."""
    for klass in type(result).__mro__:
        func = RENDERERS.get(_type_name(klass))
        if func is not None:
            func(result, json_out)
            return
    raise TypeError(f"no renderer for {type(result).__name__}")


@renders("shandy_cli.pipeline.results.ImportResult")
def _import(result: ImportResult, json_out: bool) -> None:
    if json_out:
        print_json(result.to_dict())
        return
    console = stdout_console()
    console.print(summary_table(result))
    reasons = reasons_table(result.reasons)
    if reasons is not None:
        console.print(reasons)
    note = already_present_note(result)
    if note:
        console.print(cell(note))


@renders("shandy_cli.status.StatusResult")
def _status(result: StatusResult, json_out: bool) -> None:
    if json_out:
        print_json(result.to_dict())
    else:
        stdout_console().print(status_table(result.requests))


@renders("shandy_cli.preview.PreviewResult")
def _preview(result: PreviewResult, json_out: bool) -> None:
    doc = result.document
    if json_out:
        print_json(doc)
        return
    console = stdout_console()
    delim = {"\t": "tab"}.get(doc["delimiter"] or "", doc["delimiter"])
    console.print(
        cell(f"{doc['file']}: {doc['format']}, encoding {doc['encoding']}, delimiter {delim!r}")
    )
    table = Table("column", "field label")
    for column, label in doc["mapping"].items():
        table.add_row(cell(column), cell(label or "(not mapped)"))
    console.print(table)
    if doc["problem"]:
        warn(doc["problem"])
    if doc["prospects"]:
        labels_seen = list(dict.fromkeys(k for p in doc["prospects"] for k in p))
        rows = Table(
            *(escape(safe_text(x)) for x in labels_seen),
            title=f"first {len(doc['prospects'])} prospect(s)",
        )
        for p in doc["prospects"]:
            rows.add_row(*(cell(p.get(k, "")) for k in labels_seen))
        console.print(rows)


@renders("shandy_cli.catalog.SequencesResult")
def _sequences(result: SequencesResult, json_out: bool) -> None:
    if json_out:
        print_json(result.to_json())
        return
    table = Table("sequence", "id", "active", "step", "step id")
    for seq in result.sequences:
        steps = seq["steps"] or [{"id": "", "name": ""}]
        for n, step in enumerate(steps, 1):
            first = n == 1
            table.add_row(
                cell(seq["title"] if first else ""),
                cell(seq["id"] if first else ""),
                ("yes" if seq["active"] else "no") if first else "",
                cell(f"{n}. {step['name']}" if step["id"] else ""),
                cell(step["id"] or ""),
            )
    stdout_console().print(table)


@renders("shandy_cli.catalog.FieldsResult")
def _fields(result: FieldsResult, json_out: bool) -> None:
    if json_out:
        print_json(result.to_json())
        return
    table = Table("label", "type", "id")
    for f in result.fields:
        table.add_row(cell(f["label"]), cell(f["fieldType"]), cell(f["id"]))
    stdout_console().print(table)


@renders("shandy_cli.pipeline.runs.RunsResult")
def _runs(result: RunsResult, json_out: bool) -> None:
    if json_out:
        print_json(result.to_json())
        return
    from shandy_cli.pipeline.runs import RUN_COLUMNS, run_cells

    if not sys.stdout.isatty():
        # Off a terminal, one tab-separated line a run with every value whole: a table
        # fitted to 80 columns cut run ids to ``20261201T2…``, which ``resume`` cannot take.
        for values in [list(RUN_COLUMNS), *map(run_cells, result.runs)]:
            print("\t".join(safe_text(one_line(v)) for v in values))
        return
    table = Table(*RUN_COLUMNS)
    for r in result.runs:
        table.add_row(*map(cell, run_cells(r)))
    stdout_console().print(table)


@renders("shandy_cli.pipeline.housekeeping.PruneResult")
def _pruned(result: PruneResult, json_out: bool) -> None:
    if json_out:
        print_json(result.to_json())
        return
    stdout_console().print(
        f"pruned {len(result.runs)} run(s) and {result.files} stray stdin copies older than "
        f"{result.older_than_days:g} day(s): {result.bytes_freed:,} bytes freed"
    )
    if result.removed_runs:
        stdout_console().print(
            f"removed {len(result.removed_runs)} finished run(s) older than "
            f"{result.keep_days:g} day(s) from the journal"
        )
    if result.ledger.keys_removed:
        stdout_console().print(
            f"folded the ledger: {result.ledger.keys_removed:,} earlier landing(s) of "
            "addresses landed again since dropped (what --only-new skips is the same)"
        )


@renders("shandy_cli.pipeline.trace.TraceResult")
def _trace(result: TraceResult, json_out: bool) -> None:
    if json_out:
        print_json(result.to_dict())
        return
    from shandy_cli.pipeline.trace import TRACE_COLUMNS, trace_cells

    if not result.entries:
        return  # conclude says so, on stderr, with exit 1
    if not sys.stdout.isatty():
        # Off a terminal, one tab-separated line a row, every value whole (as `runs`).
        for values in [list(TRACE_COLUMNS), *map(trace_cells, result.entries)]:
            print("\t".join(safe_text(one_line(v)) for v in values))
        return
    # On a terminal, one table a run: its id, time and target in the title, so the
    # rows' columns fit 80 characters.
    console = stdout_console()
    for run_id in result.runs:
        entries = [e for e in result.entries if e.run_id == run_id]
        first = entries[0]
        target = first.step_id or "prospect list"
        title = f"run {run_id} ({first.started}, {target}, {first.run_outcome})"
        table = Table(*TRACE_COLUMNS[3:], title=cell(title))
        for entry in entries:
            table.add_row(*map(cell, trace_cells(entry)[3:]))
        console.print(table)
