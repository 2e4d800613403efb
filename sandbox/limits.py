"""Limits: how much one job may take. Frozen; every unit is in the field's name."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits of one job, applied to its child process.

    memory_mb: address space the job may add on top of the warm child's baseline
        (RLIMIT_AS = baseline + memory_mb). Exceeding it ends the job as "memory".
    cpu_s: CPU seconds the job may burn (RLIMIT_CPU). Exceeding it ends it as "cpu".
    wall_s: wall-clock deadline, enforced from outside by SIGKILL. Ends it as "timeout".
    output_mb: total size of the outputs the job may hand back. Over it: "output_too_large".
    """

    memory_mb: int = 512
    cpu_s: int = 20
    wall_s: float = 30.0
    output_mb: int = 200

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Limits.{field.name} must be a positive number, got {value!r}")

    def tightened(self, other: "Limits | None") -> "Limits":
        """The stricter of self and other, field by field: a call may only tighten."""
        if other is None:
            return self
        return Limits(**{f.name: min(getattr(self, f.name), getattr(other, f.name))
                         for f in dataclasses.fields(self)})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Limits":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})
