"""sandbox: run untrusted work in fresh, confined, single-use child processes.

Generic: it knows nothing of PDFs or HTTP. See sandbox.runner.Sandbox for the API,
sandbox.forkserver for the state machine, sandbox.layers for each isolation layer.
"""
from sandbox.layers.base import LayerStatus
from sandbox.limits import Limits
from sandbox.memfd import MemFile
from sandbox.policy import Policy
from sandbox.result import STATUSES, Outputs, Result, Stats
from sandbox.runner import Sandbox, SandboxError

__all__ = ["Sandbox", "SandboxError", "Limits", "Policy", "Result", "Outputs", "Stats", "STATUSES",
           "MemFile", "LayerStatus"]
