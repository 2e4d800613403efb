"""The sandbox's canary job (sandbox.Sandbox's `canary=`, wired in notrace.app).

Runs in the fork server: canary() is called once there, and the job it returns is then
run by every warm child, confined, before its first job when no job waits for it yet
(sandbox.child), so that a user's job finds pikepdf's open/copy/save path and our own
answer path already faulted into the child's memory. Its data is built here from nothing: no user's bytes
ever reach it. A merge of two 2-page PDFs: the cheapest job that walks pikepdf's page
copying and writing and notrace's answer checks (each child pays it once, about 1.5 ms of
CPU measured here, off the job's path; skipped when a job already waits).
"""
from __future__ import annotations

from notrace.operations.child import sample_pdf
from notrace.operations.registry import OPERATIONS


def canary() -> tuple[list[bytes], dict]:
    """(inputs, params) of the canary job, as notrace.jobs.job_params would make them."""
    sample = sample_pdf(2)
    return [sample, sample], {"operation": "merge", "params": OPERATIONS["merge"].validate({}),
                              "max_pages": 10}
