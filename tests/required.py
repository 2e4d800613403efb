"""Tests that need something from the machine (a Docker engine, a browser): skipped with
the reason where it is missing, FAILED instead when CI requires them (.ci/run sets
NOTRACE_REQUIRE_CONTAINER=1 and NOTRACE_REQUIRE_BROWSER=1). Runs in the test process."""
from __future__ import annotations

import dataclasses
import os
from typing import NoReturn

import pytest

__all__ = ["Requirement"]


@dataclasses.dataclass(frozen=True)
class Requirement:
    """variable: the environment variable that makes it required; needs: what the tests
    need, in words; remedy: how to get it."""

    variable: str
    needs: str
    remedy: str

    @property
    def required(self) -> bool:
        return os.environ.get(self.variable) == "1"

    def unavailable(self, reason: str) -> NoReturn:
        """Skip, or fail when the tests are required (CI)."""
        if self.required:
            pytest.fail(f"{self.variable}=1 but {reason}", pytrace=False)
        pytest.skip(f"{self.needs}: {reason} ({self.remedy}, or set {self.variable}=1 "
                    "to fail)", allow_module_level=True)
