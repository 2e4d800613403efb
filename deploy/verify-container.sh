#!/usr/bin/env bash
# Verify a RUNNING notrace container keeps its promises: unprivileged user, read-only root,
# /tmp the only writable place and in memory, no mounts or volumes, seccomp filter on,
# no_new_privs, no capabilities, refused system calls, memory limit without swap, healthy.
#
#   deploy/verify-container.sh              # the `notrace` service of docker compose here
#   deploy/verify-container.sh CONTAINER    # any container name or id
#
# Prints one PASS/FAIL line per promise; exits 1 if any fails. Needs only docker on the
# host; inside, it runs a short probe with the image's own python3 (standard library).
set -uo pipefail

container=${1:-}
if [ -z "$container" ]; then
    container=$(docker compose ps -q notrace 2>/dev/null | head -n 1)
    [ -n "$container" ] || { echo "verify-container: no running notrace service here; pass a container name" >&2; exit 2; }
fi
docker inspect "$container" >/dev/null 2>&1 || { echo "verify-container: no container $container" >&2; exit 2; }

failed=0
check() {  # check "what" actual expected
    if [ "$2" = "$3" ]; then
        printf 'PASS  %-38s %s\n' "$1" "$2"
    else
        printf 'FAIL  %-38s got %s, want %s\n' "$1" "$2" "$3"
        failed=1
    fi
}
inspect() { docker inspect -f "$1" "$container"; }

# From the engine's view.
check "running and healthy" "$(inspect '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}')" "running/healthy"
check "user" "$(inspect '{{.Config.User}}')" "10001:10001"
check "read-only root filesystem" "$(inspect '{{.HostConfig.ReadonlyRootfs}}')" "true"
check "no mounts, no volumes" "$(inspect '{{len .Mounts}}')" "0"
check "capabilities dropped" "$(inspect '{{join .HostConfig.CapDrop ","}}|{{len .HostConfig.CapAdd}}')" "ALL|0"
check "not privileged" "$(inspect '{{.HostConfig.Privileged}}')" "false"
secopts=$(inspect '{{json .HostConfig.SecurityOpt}}')
check "own seccomp profile (not default)" \
    "$(grep -q '"seccomp=' <<<"$secopts" && ! grep -q 'seccomp=unconfined' <<<"$secopts" && echo custom || echo default)" "custom"
check "no-new-privileges option" \
    "$(grep -q 'no-new-privileges:true' <<<"$secopts" && echo set || echo unset)" "set"
mem=$(inspect '{{.HostConfig.Memory}}'); swap=$(inspect '{{.HostConfig.MemorySwap}}')
check "memory limit, no swap" "$([ "$mem" -gt 0 ] && [ "$mem" = "$swap" ] && echo "limited" || echo "mem=$mem swap=$swap")" "limited"
check "pids limit" "$([ "$(inspect '{{.HostConfig.PidsLimit}}')" -gt 0 ] 2>/dev/null && echo set || echo unset)" "set"

# From inside: what the kernel says about PID 1 and what a process there can do.
probe=$(docker exec -i "$container" python3 - <<'PY' 2>&1
import ctypes, errno, os
status = dict(l.split(":", 1) for l in open("/proc/1/status") if ":" in l)
get = lambda k: status[k].strip()
print("uid", os.getuid())
print("pid1_uid", get("Uid").split()[0])
print("seccomp", get("Seccomp"))
print("no_new_privs", get("NoNewPrivs"))
print("cap_eff", int(get("CapEff"), 16), )
print("cap_bnd", int(get("CapBnd"), 16))
for d in ("/", "/app", "/etc"):
    try:
        open(os.path.join(d, ".verify"), "w").close()
        print("write" + d.replace("/", "_"), "ALLOWED")
    except OSError as e:
        print("write" + d.replace("/", "_"), errno.errorcode[e.errno])
open("/tmp/.verify", "w").write("x"); os.unlink("/tmp/.verify")
tmp = [l.split() for l in open("/proc/mounts") if l.split()[1] == "/tmp"]
opts = set(tmp[0][3].split(",")) if tmp else set()
print("tmp", (tmp[0][2] if tmp else "none") + ("+noexec+nosuid+nodev" if {"noexec", "nosuid", "nodev"} <= opts else ""))
libc = ctypes.CDLL(None, use_errno=True)
nr = {"x86_64": 272, "aarch64": 97}.get(os.uname().machine)
if nr is not None:
    r = libc.syscall(nr, 0x10000000)           # unshare(CLONE_NEWUSER)
    print("unshare", "ALLOWED" if r == 0 else errno.errorcode[ctypes.get_errno()])
PY
)
value() { printf '%s\n' "$probe" | awk -v k="$1" '$1 == k {print $2}'; }
check "runs as uid 10001" "$(value uid)/$(value pid1_uid)" "10001/10001"
check "seccomp filter on PID 1" "$(value seccomp)" "2"
check "no_new_privs on PID 1" "$(value no_new_privs)" "1"
check "effective and bounding caps empty" "$(value cap_eff)/$(value cap_bnd)" "0/0"
check "write to / refused" "$(value write_)" "EROFS"
check "write to /app refused" "$(value write_app)" "EROFS"
check "write to /etc refused" "$(value write_etc)" "EROFS"
check "/tmp is tmpfs, noexec,nosuid,nodev" "$(value tmp)" "tmpfs+noexec+nosuid+nodev"
check "unshare refused by seccomp" "$(value unshare)" "EPERM"

if [ $failed = 0 ]; then echo "verify-container: every promise holds"; else echo "verify-container: SOME PROMISES DO NOT HOLD"; fi
exit $failed
