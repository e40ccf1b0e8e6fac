"""Stage 5: where the chunks go (a step, found by id or by sequence name) and sending them."""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from shandy_cli.client import IMPORT_TO_LIST, IMPORT_TO_STEP, SaleshandyClient
from shandy_cli.errors import (
    ApiError,
    ApiValidationError,
    AuthenticationError,
    InputError,
    RateLimitError,
    ServerError,
    TransportError,
)
from shandy_cli.journal import Journal
from shandy_cli.pipeline.chunking import STEP, Chunk
from shandy_cli.pipeline.events import ChunkEvent, Listener

# A POST answered with one of these was refused outright: nothing of it was imported.
REFUSED = (RateLimitError, AuthenticationError, ApiValidationError)


@dataclass
class Attempts:
    """Every POST of a run's chunks, journalled (``sending``) before it is made, and which
    of them may have delivered: an accepted chunk, or a POST whose answer was lost
    (dropped, timed out, a 5xx) now or in an earlier attempt (``resent``). A POST the API
    refused outright (a 400, the key, a rate limit) delivered nothing: no attempt."""

    journal: Journal
    run_id: str
    resent: list[int]  # the run's result's list: chunks that may have landed twice
    sending: int | None = None  # the chunk whose POST is under way
    uncertain: set[int] = field(default_factory=set)  # may have landed, answer unknown
    counts: Counter[int] = field(default_factory=Counter)  # POSTs per chunk, this process

    def begin(self, index: int) -> None:
        """Journal a POST attempt, durably, before it is made."""
        self.journal.mark(self.run_id, index, "sending")
        self.sending = index  # only once journalled: a POST is never made unrecorded
        self.counts[index] += 1
        if self.counts[index] == 2 and index not in self.resent:
            self.resent.append(index)  # the first may have landed

    def accepted(
        self,
        sub: Submitted,
        step_id: str | None,
        keys: array,
        *,
        hashes: array | None = None,
        account: str = "",
        keep_body: bool = False,
    ) -> None:
        """Journal an accepted chunk, its rows (and their prospects' digests) in the
        ledger of ``account``; its body has served, unless ``keep_body`` (the rows
        Saleshandy finds already present are read from it again: --update-existing)."""
        self.journal.accept(
            self.run_id,
            sub.chunk.index,
            sub.request_id,
            step_id,
            keys,
            hashes=hashes,
            account=account,
            update=sub.chunk.update,
        )
        self.sending = None
        if sub.chunk.path is not None and not keep_body:
            sub.chunk.path.unlink(missing_ok=True)  # accepted: never needed again

    def hearing(self, listener: Listener) -> Listener:
        """``listener``, after each POST's attempt is journalled as it begins (``begin``)."""

        def heard(event: Any) -> None:
            if isinstance(event, ChunkEvent) and event.state == "sending":
                self.begin(event.index)
            listener(event)

        return heard

    @contextmanager
    def retries_heard(self, client: SaleshandyClient) -> Iterator[None]:
        """While sending, a POST's failed attempt that the client retries is told to
        ``failed`` at once (a refusal is no attempt; a lost answer may have landed)."""
        previous = client.on_retry

        def on_retry(what: str, attempt: int, delay: float, exc: ApiError) -> None:
            if what.startswith("POST "):
                self.failed(exc)
            if previous:
                previous(what, attempt, delay, exc)

        client.on_retry = on_retry
        try:
            yield
        finally:
            client.on_retry = previous

    def failed(self, exc: BaseException) -> None:
        """The POST under way failed: refused outright it is no attempt, in this process
        or in the journal (else its rows already in the sequence would count as its own
        repeats); lost, it may have landed."""
        if isinstance(exc, REFUSED):
            self._unsend()
        elif self.sending is not None and isinstance(exc, ServerError | TransportError):
            self.uncertain.add(self.sending)

    def broke(self, exc: BaseException) -> None:
        """Something not the API's (a fault of the machine) stopped the run: a POST under
        way may have landed."""
        if self.sending is not None and not isinstance(exc, ApiError):
            self.uncertain.add(self.sending)

    def _unsend(self) -> None:
        index, self.sending = self.sending, None
        if index is None or self.counts[index] < 1:
            return
        self.counts[index] -= 1
        self.journal.unsend(self.run_id, index)


@dataclass
class Submitted:
    chunk: Chunk
    request_id: str


def resolve_step(client: SaleshandyClient, sequence: str, step_number: int = 1) -> str:
    """The id of step ``step_number`` of the sequence named (or with id) ``sequence``.

    An exact id or an exact (case-insensitive) title wins; otherwise a unique
    title containing the text. Several candidates: list them and send nothing.
    Sequences are paged; the server's ``sequenceName`` filter is asked first
    (fewest calls), and every page of the whole list when the filter finds
    nothing we match (its exact semantics are undocumented, and an id is no name).
    """
    wanted = sequence.strip()
    if not wanted:
        raise InputError("--sequence must not be empty")
    matches = _matching(client.list_sequences(name=wanted), wanted)
    if not matches:
        everything = client.list_sequences()
        matches = _matching(everything, wanted)
        if not matches:
            titles = ", ".join(repr(s.get("title")) for s in everything[:20]) or "none"
            more = f" (and {len(everything) - 20} more)" if len(everything) > 20 else ""
            raise InputError(f"no sequence matches {sequence!r}; sequences: {titles}{more}")
    if len(matches) > 1:
        listing = "; ".join(f"{s.get('title')!r} (id {s.get('id')})" for s in matches)
        raise InputError(
            f"{sequence!r} matches {len(matches)} sequences: {listing}; pass the sequence id"
        )
    return _step_of(client, matches[0], step_number)


def _matching(sequences: list[dict[str, Any]], wanted: str) -> list[dict[str, Any]]:
    folded = wanted.casefold()
    exact = [s for s in sequences if str(s.get("id")) == wanted] or [
        s for s in sequences if str(s.get("title", "")).casefold() == folded
    ]
    return exact or [s for s in sequences if folded in str(s.get("title", "")).casefold()]


def _step_of(client: SaleshandyClient, seq: dict[str, Any], step_number: int) -> str:
    steps = seq.get("steps")
    if not steps:
        steps = client.list_steps(str(seq.get("id")))
    if not isinstance(steps, list):
        raise ApiError(f"sequence {seq.get('title')!r}: the API's list of steps is not a list")
    if step_number < 1 or step_number > len(steps):
        raise InputError(
            f"sequence {seq.get('title')!r} has {len(steps)} step(s); "
            f"--step-number {step_number} is out of range"
        )
    step = steps[step_number - 1]
    step_id = step.get("id") if isinstance(step, dict) else None
    if isinstance(step_id, bool) or not isinstance(step_id, str | int) or not str(step_id).strip():
        raise ApiError(
            f"sequence {seq.get('title')!r}: step {step_number} has no usable id in the API's "
            "answer; nothing was sent (pass --step STEP_ID)"
        )
    return str(step_id)


def submit_chunks(
    client: SaleshandyClient,
    chunks: Iterable[Chunk],
    *,
    listener: Listener,
    idle: Callable[[float, str], None] | None = None,
) -> Iterator[Submitted]:
    """POST each chunk's spooled body in order, to its endpoint (``Chunk.endpoint``: the
    step import, or the account-level one), yielding as each is accepted.

    Before a POST that must wait for its endpoint's budget, ``idle(seconds,
    endpoint)`` is given that time (the run polls accepted chunks in it); otherwise
    the client waits by itself. Raises the client's error for the first chunk that
    could not be sent after retries; the caller knows which chunks were accepted
    from what was yielded.
    """
    for chunk in chunks:
        to_step = chunk.endpoint == STEP
        endpoint = import_endpoint(to_step)

        def sending(attempt: int, chunk: Chunk = chunk) -> None:
            listener(ChunkEvent(chunk.index, "sending", chunk.rows, chunk.bytes))

        wait = client.budget.delay(endpoint)
        if idle is not None and wait > 0:
            idle(wait, endpoint)
        if chunk.path is None:
            raise ValueError(f"chunk {chunk.index + 1} has no body: a plan-only chunk")
        try:
            request_id = client.import_prospects(chunk.path, to_step=to_step, on_attempt=sending)
        except ApiError as exc:
            listener(ChunkEvent(chunk.index, "planned", chunk.rows, chunk.bytes))
            exc.chunk = chunk.index + 1  # its context: said once, by str(exc)
            raise
        listener(ChunkEvent(chunk.index, "accepted", chunk.rows, chunk.bytes, request_id))
        yield Submitted(chunk, request_id)


def import_endpoint(to_step: bool) -> str:
    """The budget a chunk's POST counts against."""
    return f"POST {IMPORT_TO_STEP if to_step else IMPORT_TO_LIST}"
