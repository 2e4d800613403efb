"""notrace's child entry with a back door, for the HTTP attack tests.

Imported by the fork server of a real `notrace serve` (tests.attack.hostile_server). An
upload whose first file starts with ATTACK_MAGIC is an attack order (JSON after the
magic; it is given the job's own params as "job") run in place of the operation: the exploited parser's code, answering whatever
it likes. Any other upload is processed by notrace's own entry, unchanged.
"""
from __future__ import annotations

import json

from notrace.operations import child
from tests.attack.entries import ATTACK_MAGIC, dispatch


#: An order's longest JSON. Only the order is decoded, whatever follows it: a later job
#: of the same request may get as input a memfd an attacker child wrote an order into
#: (safe's phase 2 maps phase 1's output memfd whole), and so obey it too.
MAX_ORDER = 1 << 20


def run(inputs, params):
    if inputs and bytes(inputs[0][:len(ATTACK_MAGIC)]) == ATTACK_MAGIC:
        text = bytes(inputs[0][len(ATTACK_MAGIC):len(ATTACK_MAGIC) + MAX_ORDER])
        attack, _end = json.JSONDecoder().raw_decode(text.decode("latin-1"))
        return dispatch(inputs[1:], {**attack, "job": params})  # what the job asked too
    return child.run(inputs, params)
