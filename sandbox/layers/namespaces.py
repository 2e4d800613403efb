"""Namespaces: a fresh user, network, IPC and UTS namespace for each child.

probe() runs in the fork server (it forks a throwaway child to find out); apply() in the
child, after Privileges, as the unprivileged user. Not required by default: Docker's
default seccomp profile refuses unshare(CLONE_NEWUSER), so inside a container the other
layers (no sockets in seccomp, Landlock's TCP and scope rules) have to do without it.
"""
from __future__ import annotations

import errno
import os
import signal

from sandbox.layers import _sys
from sandbox.layers.base import ChildContext, Layer, LayerError, LayerStatus
from sandbox.policy import Policy

# <linux/sched.h>. The user namespace is what lets an unprivileged process create the
# others; the network namespace has only a down loopback: no route anywhere.
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUTS = 0x04000000
FLAGS = CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS

_PROBE_TIMEOUT_S = 5.0
_PROBE_CRASHED = 255  # exit code of a probe child that failed other than by unshare's errno


class Namespaces(Layer):
    """unshare() into new user/net/IPC/UTS namespaces, then drop the capabilities the new
    user namespace grants."""

    name = "namespaces"

    def probe(self) -> LayerStatus:
        """In the (single-threaded) fork server: fork a child that tries the unshare.

        Only trying tells: a container's seccomp profile, a sysctl
        (user.max_user_namespaces, kernel.unprivileged_userns_clone) or an LSM may refuse
        it. As root the child first drops to the default unprivileged identity, since
        that is who unshares in a real child.
        """
        try:
            pid = os.fork()
        except OSError as exc:
            return LayerStatus(self.name, False, f"cannot fork the probe: {exc}")
        if pid == 0:  # the throwaway child: always ends in os._exit
            code = _PROBE_CRASHED
            try:
                if os.geteuid() == 0:
                    default = Policy()
                    os.setgroups([])
                    os.setresgid(*(default.unprivileged_gid,) * 3)
                    os.setresuid(*(default.unprivileged_uid,) * 3)
                _sys.unshare(FLAGS)
                code = 0
            except OSError as exc:
                code = exc.errno if exc.errno and 0 < exc.errno < _PROBE_CRASHED else _PROBE_CRASHED
            finally:
                os._exit(code)
        status = _sys.wait_bounded(pid, _PROBE_TIMEOUT_S)
        code = os.waitstatus_to_exitcode(status)
        if code == 0:
            return LayerStatus(self.name, True, "user, net, ipc, uts namespaces")
        if code < 0:
            return LayerStatus(self.name, False, f"unshare probe killed by signal {-code}")
        if code == _PROBE_CRASHED:
            return LayerStatus(self.name, False, "unshare probe failed before unshare")
        reason = f"unshare(CLONE_NEWUSER) refused: {errno.errorcode.get(code, code)}"
        if code == errno.EPERM:
            reason += " (inside a container?)"
        return LayerStatus(self.name, False, reason)

    def apply(self, ctx: ChildContext) -> None:
        """In the child, already unprivileged (Privileges ran first)."""
        expected_ppid = os.getppid()
        try:
            _sys.unshare(FLAGS)
            # The new user namespace hands this process a full capability set (bounding
            # set included) over the new namespaces. Nothing needs it: drop it all, the
            # bounding set first (possible now: CAP_SETPCAP is in the new set).
            _sys.drop_all_capabilities()
            # Entering the user namespace was a credential change: the kernel cleared the
            # death signal and reset dumpable. Arm both again.
            _sys.arm_parent_death_signal(expected_ppid, signal.SIGKILL)
            _sys.set_undumpable()
        except OSError as exc:
            raise LayerError(f"namespaces: {exc}") from exc
