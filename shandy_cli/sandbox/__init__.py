"""A local emulator of the Saleshandy Open API, for tests and ``shandy sandbox``.

It follows the documented API, not the client: it is the client's adversary in tests.
State lives in SQLite under ``SandboxConfig.state_dir`` so an import accepted by one
process can be polled from another. Seeded account (stable ids):

* sequences ``seqOutQ4`` "Outbound Q4" (steps ``StepA1`` "Intro email", ``StepA2``
  "Follow-up"), ``seqWebinar`` "Webinar Follow-up" (inactive; step ``StepW1``),
  ``seqOutQ4E`` "Outbound Q4 EMEA" (step ``StepE1``);
* system fields First Name, Last Name, Email, Phone Number, Company, Job Title,
  Website, LinkedIn URL, City, State, Country; custom fields Lead Source, Industry.

Test hooks (no key needed): ``POST /_sandbox/faults``, ``GET /_sandbox/faults``,
``GET /_sandbox/requests``, ``POST /_sandbox/reset``; see ``faults`` for fault specs.
"""

from shandy_cli.sandbox.server import Sandbox, SandboxConfig, serve_forever, start_sandbox

__all__ = ["Sandbox", "SandboxConfig", "serve_forever", "start_sandbox"]
