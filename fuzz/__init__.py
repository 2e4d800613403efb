"""Fuzzing support for notrace: Hypothesis strategies for valid, broken and hostile PDFs.

The public surface is `fuzz.strategies`; every `fuzz._*` module is private. Runs in the
test process (or a fuzzing driver), never in the service.
"""
