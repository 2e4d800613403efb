"""Policy: what a child may do beyond computing on its inputs.

Every weakening of isolation is an explicit, greppable opt-in here
(`allow_missing_layers`); nothing is weakened silently.
"""
from __future__ import annotations

import dataclasses

#: Layers, in the order confinement applies them (seccomp last).
LAYER_ORDER = ("privileges", "namespaces", "rlimits", "landlock", "seccomp")
#: Layers a child must have unless the Policy opts out by name. Namespaces are refused
#: inside containers (Docker's seccomp profile), so they are applied where possible only.
REQUIRED_BY_DEFAULT = frozenset({"privileges", "rlimits", "landlock", "seccomp"})


@dataclasses.dataclass(frozen=True)
class Policy:
    """What a confined child may do.

    readable_files: files the child may open read-only by path (Landlock rules), e.g.
        /dev/urandom, which qpdf opens by path to make encryption keys.
    unprivileged_uid / unprivileged_gid: identity a child drops to when the fork server
        runs as root (children never run as root).
    allow_missing_layers: names of required layers the host may lack without start() failing.
        Weakens isolation: grep for it.
    """

    readable_files: tuple[str, ...] = ("/dev/urandom",)
    unprivileged_uid: int = 65534
    unprivileged_gid: int = 65534
    allow_missing_layers: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = set(self.allow_missing_layers) - set(LAYER_ORDER)
        if unknown:
            raise ValueError(f"Policy.allow_missing_layers names unknown layers: {sorted(unknown)}")
        for path in self.readable_files:
            if not path.startswith("/"):
                raise ValueError(f"Policy.readable_files needs absolute paths, got {path!r}")
        object.__setattr__(self, "allow_missing_layers", frozenset(self.allow_missing_layers))

    def required(self, layer: str) -> bool:
        return layer in REQUIRED_BY_DEFAULT and layer not in self.allow_missing_layers

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["readable_files"] = list(self.readable_files)
        d["allow_missing_layers"] = sorted(self.allow_missing_layers)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "Policy":
        return cls(readable_files=tuple(data["readable_files"]),
                   unprivileged_uid=data["unprivileged_uid"],
                   unprivileged_gid=data["unprivileged_gid"],
                   allow_missing_layers=frozenset(data["allow_missing_layers"]))
