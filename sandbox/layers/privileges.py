"""Privileges: the child gives up every privilege it could have before anything else.

probe() runs in the fork server; apply() in the child, first of all layers. The caller
has already put the child in its own process group.
"""
from __future__ import annotations

import os
import signal

from sandbox.layers import _sys
from sandbox.layers.base import ChildContext, Layer, LayerError, LayerStatus
from sandbox.policy import Policy


class Privileges(Layer):
    """Drop from root to the policy's unprivileged uid/gid, drop all capabilities,
    set no_new_privs, make the child undumpable, and tie its life to its parent's."""

    name = "privileges"

    def probe(self) -> LayerStatus:
        """In the fork server: always available; says which identity children will run as."""
        _sys.last_capability()      # probed once here, inherited by every child
        if os.geteuid() == 0:
            default = Policy()
            detail = (f"children drop from root to uid {default.unprivileged_uid} "
                      f"gid {default.unprivileged_gid} (default policy), no capabilities")
        else:
            detail = f"children keep uid {os.geteuid()} (not root), no capabilities"
        return LayerStatus(self.name, True, detail + ", no_new_privs, not dumpable")

    def prepare(self) -> None:
        """In the fork server: empty its bounding set once. It limits only what execve
        could grant, and the fork server never execs, so its own work is unchanged;
        children inherit the empty set instead of each paying ~2 ms to drop 41 caps."""
        _sys.drop_bounding_set()

    def apply(self, ctx: ChildContext) -> None:
        """In the child. Order matters, see the comments."""
        expected_ppid = os.getppid()
        try:
            if ctx.was_root or os.geteuid() == 0:
                self._drop_root(ctx.policy.unprivileged_uid, ctx.policy.unprivileged_gid)
            else:
                _sys.drop_all_capabilities()
            # After the uid change: the kernel clears the death signal and the dumpable
            # flag on every credential change.
            _sys.arm_parent_death_signal(expected_ppid, signal.SIGKILL)
            _sys.set_undumpable()
            # no_new_privs: execve can never grant privileges again (setuid bits, file
            # capabilities); also the precondition of Landlock and of seccomp as non-root.
            _sys.prctl(_sys.PR_SET_NO_NEW_PRIVS, 1)
            if _sys.prctl(_sys.PR_GET_NO_NEW_PRIVS) != 1:
                raise LayerError("no_new_privs did not stick")
        except OSError as exc:
            raise LayerError(f"privileges: {exc}") from exc

    @staticmethod
    def _drop_root(uid: int, gid: int) -> None:
        # The bounding set needs CAP_SETPCAP to drop: empty it while still root.
        _sys.drop_bounding_set()
        # Groups and gid first: once the uid is gone, they could not be changed any more.
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
            raise LayerError(f"identity not dropped: uids {os.getresuid()} gids {os.getresgid()}")
        for regain in (lambda: os.setresuid(0, 0, 0), lambda: os.setresgid(0, 0, 0),
                       lambda: os.setgroups([0])):
            try:
                regain()
            except PermissionError:
                continue
            raise LayerError("root could be regained after the uid drop")
        # Leaving uid 0 already cleared effective and permitted; inheritable and ambient
        # are cleared here, and all of it verified.
        _sys.clear_capabilities()
