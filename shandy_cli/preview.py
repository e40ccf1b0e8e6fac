"""``shandy preview``: how a file will be read and mapped, without sending anything."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from shandy_cli.client import SaleshandyClient
from shandy_cli.errors import InputError
from shandy_cli.exits import ExitCode
from shandy_cli.pipeline.labels import field_labels
from shandy_cli.pipeline.mapping import build_mapping, load_mapping_file
from shandy_cli.pipeline.sources import open_source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreviewResult:
    """A preview (``document``: the contract's ``shandy preview --json``) and the labels'
    source: "account", or "system" without a client."""

    document: dict[str, Any]
    labels_source: str
    exit_code: ExitCode = ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return self.document


def preview(path: str, client: SaleshandyClient | None = None, **options: Any) -> PreviewResult:
    """``preview_file`` against the labels an import of ``path`` would map to: the account's
    through ``client``, else the system labels (said as a warning). ``options`` are
    ``preview_file``'s."""
    found = field_labels(client)
    if found.source == "system":
        log.warning("no API key: mapping against Saleshandy's system field labels only")
    return PreviewResult(preview_file(path, found.labels, **options), found.source)


def preview_file(
    path: str,
    labels: list[str],
    *,
    limit: int = 10,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    member: str | None = None,
    column_map: dict[str, str] | None = None,
    mapping_file: Path | None = None,
    constants: dict[str, str] | None = None,
    stdin: BinaryIO | None = None,
) -> dict[str, Any]:
    """The contract's preview document: format, encoding, delimiter, columns, mapping, rows."""
    explicit, consts = dict(column_map or {}), dict(constants or {})
    if mapping_file:
        file_map, file_set = load_mapping_file(mapping_file)
        explicit, consts = {**file_map, **explicit}, {**file_set, **consts}
    with open_source(
        path, encoding=encoding, delimiter=delimiter, sheet=sheet, member=member, stdin=stdin
    ) as src:
        info = src.info
        rows = list(itertools.islice(src.rows(), max(limit, 0)))
    problem = None
    mapping = None
    if info.columns:
        try:
            mapping = build_mapping(
                info.columns,
                labels,
                explicit=explicit,
                constants=consts,
                on_unknown="ignore",
                file=info.name,
            )
        except InputError as exc:
            problem = exc.message
    targets = mapping.targets if mapping else [None] * len(info.columns)
    return {
        "file": info.name,
        "format": info.format,
        "encoding": info.encoding,
        "delimiter": info.delimiter,
        "columns": info.columns,
        "mapping": dict(zip(info.columns, targets, strict=True)),
        "rows": [dict(itertools.zip_longest(info.columns, r.values, fillvalue="")) for r in rows],
        "prospects": [mapping.prospect(r.values) for r in rows] if mapping else [],
        "problem": problem,
    }
