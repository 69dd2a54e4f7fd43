"""A check for schemathesis runs (SCHEMATHESIS_HOOKS=schemathesis_hooks): every error is a JSON `detail`."""

import json

import schemathesis


@schemathesis.check
def errors_are_json_detail(ctx, response, case):
    if response.status_code < 400 or case.path == "/metrics":
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"error {response.status_code} is not JSON: {response.content[:200]!r}") from None
    if not isinstance(body, dict) or "detail" not in body:
        raise AssertionError(f"error {response.status_code} has no 'detail': {response.content[:200]!r}")
    return None
