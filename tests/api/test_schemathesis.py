"""Schema-driven fuzzing in-process: schemathesis generates requests from /openapi.json
(valid and invalid ones, every operation) and runs every check on the answers: no 5xx,
documented status codes and content types, bodies that match their response schema,
invalid requests refused, API keys enforced. See tests/fuzzing.py for the one check that
is narrowed, and why.
"""

from __future__ import annotations

import os

import schemathesis

from app.main import create_app
from app.settings import Settings
from tests.fuzzing import API_KEY, AUTH, EXCLUDED_CHECKS, fuzz_settings

# With API keys configured, so that the security schemes the document declares are real.
app = create_app(Settings(api_keys=[API_KEY], access_log=False))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
schema.config.checks.update(excluded_check_names=EXCLUDED_CHECKS)

#: Examples per operation for the random phase (the deterministic coverage and examples
#: phases add a few hundred per POST operation); about a minute in all on 2 cores.
#: XENTROPY_FUZZ_EXAMPLES=2000 for a longer hunt.
MAX_EXAMPLES = int(os.environ.get("XENTROPY_FUZZ_EXAMPLES", "200"))


@schema.parametrize()
@fuzz_settings(MAX_EXAMPLES)
def test_every_operation(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=AUTH)
