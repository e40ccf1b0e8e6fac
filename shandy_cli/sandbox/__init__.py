"""A local emulator of the Saleshandy Open API, for tests and ``shandy sandbox``.

It follows the API as live clients see it (where Saleshandy's docs and live answers
differ, live wins), never the client: it is the client's adversary in tests. State
lives in SQLite under ``SandboxConfig.state_dir`` so an import accepted by one
process can be polled from another.

Seeded account (stable ids):

* sequences ``seqOutQ4`` "Outbound Q4" (steps ``StepA1`` "Intro email", ``StepA2``
  "Follow-up"), ``seqWebinar`` "Webinar Follow-up" (inactive; step ``StepW1``),
  ``seqOutQ4E`` "Outbound Q4 EMEA" (step ``StepE1``). ``extra_sequence_titles``
  (``--sequence-title``) adds named sequences ``seqExtra01``... (step ``StepX01``...)
  and ``extra_sequences=N`` (``--sequences N``) generated ones ``seqGen001``
  "Campaign 001"... (step ``StepG001``...), all listed BEFORE the seeded three:
  with 150, "Outbound Q4" is on page 2 of 100; add the title "Outbound Q4" to put a
  clash on pages 1 and 2.
* system fields First Name, Last Name, Email, Company, Phone Number, Job Title, City,
  Country, LinkedIn; custom fields Website, State, Lead Source (text), Industry
  (dropdown), Deal Size (number) and Annual Revenue (currency). A non-number in a
  number or currency field fails its row: "Mismatch in custom field type".

Live behaviours:

* Rate limits, on by default: per key (the ``x-api-key`` value), 20 calls per
  endpoint (method + route template) and 300 in total in a sliding 60 s window.
  Over the limit: HTTP 400 ``{"code": 40000, "type": "TOO_MANY_REQUESTS", "message":
  "Rate Limit exceeded"}``, or 429 with ``Retry-After`` (``rate_status``). Limited
  endpoints' answers carry ``x-ratelimit-limit``, ``-remaining`` and ``-reset``
  (``rate_reset_format``: seconds, epoch, http-date, iso). Refused calls, the
  presigned report link, ``/_sandbox/*``, unknown routes, calls without a key and
  injected fault answers are not counted. A call is counted before its key is
  checked, under the key it sent.
* Authentication: no key is 401. A wrong key (with ``api_key`` set) is answered
  as live clients saw it, endpoint by endpoint:

  ======================  ====  ===============================================
  ``GET /v1/sequences``   401   ``{"error": "Unauthorized", "error_code": "1001",
                                "error_message": "Invalid token"}`` (the gateway)
  ``POST /v1/fields``     403   ``{"code": 4003, "type": "FORBIDDEN", "message":
                                "4003: You don't have required permissions ..."}``
  every other endpoint    400   ``{"code": 1001, "type": "UNAUTHORIZED",
                                "message": "1001: Invalid token"}``
  ======================  ====  ===============================================

* An unknown import request id is 400 ``{"code": 40000, "type": "NOT_FOUND",
  "message": "40000: Prospect import request not found"}``: the rate limit's code.
* Validation errors: ``{"statusCode": 400, "message": "..." | [...], "error": "Bad
  Request"}``, a list when there are several. A GET with ``Content-Type`` is fine.
* Accounts: each API key is its own account (with ``api_key`` set, only that one).
  An account holds one prospect per email, compared case-insensitively, with its
  field values, tags and step memberships; another key never sees them, nor its
  import ids (their status is "not found"). Fields and sequences are shared.
* The step import (``POST /v1/sequences/prospects/import-with-field-name``):

  - a prospect new to the account is created and enrolled in the step;
  - one already in any step of the step's sequence (the same step included) fails
    its row ("Prospect already present in another step of same sequence"), and none
    of its fields or tags is written, whatever ``conflictAction`` says (live);
  - one the account knows but not in that sequence is enrolled in the step, and
    ``conflictAction`` applies to its fields. The API notes record nothing live for
    this case, so it follows the docs (``conflictAction`` decides an existing
    prospect's fields).
* The account import (``POST /v1/prospects/import-with-field-name``) creates new
  prospects and updates existing ones by email per ``conflictAction`` whatever their
  sequences: ``noUpdate`` leaves their fields, ``overwrite`` replaces the given ones,
  ``addMissingFields`` fills only empty or absent ones, ``upsert`` acts as
  ``overwrite``. Without ``stepId`` no membership changes; with one (the official
  spec allows it) new prospects and those in none of that sequence's steps join the
  step, and enrolled ones stay where they are.
* Both apply the request's ``tags`` to every prospect they write. An account's
  imports run one after another, each taking ``delay_base + rows * delay_per_row``;
  what they decide is visible in ``GET /v1/prospects`` once they complete.
* ``GET /v1/sequences`` and ``GET /v1/prospects`` answer bare arrays, paged
  (sequences: pageSize 100 by default, at most 1000, ``sequenceName`` filter;
  prospects: pageSize capped at 100, oldest first). ``GET /v1/prospects?search=``
  keeps the prospects whose email or a field value contains the text (any case).
  Each prospect reads ``{"id", "email", "attributes": [{"key", "value"}], "steps",
  "tags"}``: ``steps`` (step ids, in listing order) and ``tags`` (sorted) are the
  sandbox's own, there for tests to read a prospect's memberships.

Test hooks (no key needed): ``POST /_sandbox/faults``, ``GET /_sandbox/faults``,
``GET /_sandbox/requests``, ``POST /_sandbox/reset`` (every account); see ``faults`` for fault specs
(among them ``rl400`` and ``rl4000``, the live rate-limit answers) and ``requestlog``
for what a request log entry holds (``endpoint``, ``limited``).

Webhook receiver (no key, loopback clients only; not Saleshandy's API), for ``--notify``:
``POST /webhooks/NAME`` stores a delivery, ``GET /webhooks/NAME`` lists them, and
``POST /services/T/B/TOKEN`` answers as a Slack incoming webhook; see ``webhooks``.
"""

from shandy_cli.sandbox.server import Sandbox, SandboxConfig, serve_forever, start_sandbox

__all__ = ["Sandbox", "SandboxConfig", "serve_forever", "start_sandbox"]
