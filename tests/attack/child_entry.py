"""notrace's child entry with a back door, for the HTTP attack tests.

Imported by the fork server of a real `notrace serve` (tests.attack.hostile_server). An
upload whose first file starts with ATTACK_MAGIC is an attack order (JSON after the
magic) run in place of the operation: the exploited parser's code, answering whatever
it likes. Any other upload is processed by notrace's own entry, unchanged.
"""
from __future__ import annotations

import json

from notrace.operations import child
from tests.attack.entries import ATTACK_MAGIC, dispatch


def run(inputs, params):
    if inputs and bytes(inputs[0][:len(ATTACK_MAGIC)]) == ATTACK_MAGIC:
        return dispatch(inputs[1:], json.loads(bytes(inputs[0][len(ATTACK_MAGIC):])))
    return child.run(inputs, params)
