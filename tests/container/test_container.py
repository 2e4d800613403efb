"""The container's promises, checked on the REAL image running under docker-compose.yml.

Needs a Docker engine (see conftest.py: skipped without one, failed in CI). Order
matters only for the last test, which takes the compose project down and up again.
"""
from __future__ import annotations

import base64
import io
import json
import os
import pathlib
import time

import pytest

from tests.container.conftest import ROOT, docker, run, unavailable

pytestmark = [pytest.mark.container, pytest.mark.timeout(600)]

MAX_ADDED_MB = 75
UID = 10001
MEM_LIMIT = 1536 << 20                       # docker-compose.yml mem_limit
CORPUS = pathlib.Path(os.environ.get("NOTRACE_CORPUS", ROOT.parent / "shared" / "corpus"))


def _json(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---- the image ----

def test_image_adds_at_most_75_mb_to_its_base(image):
    added_mb = (image.size_bytes - image.base_size_bytes) / 1e6
    print(f"image {image.tag}: {image.size_bytes / 1e6:.1f} MB, base {image.base} "
          f"{image.base_size_bytes / 1e6:.1f} MB, added {added_mb:.1f} MB, "
          f"built in {image.build_s:.0f} s")
    assert added_mb <= MAX_ADDED_MB, f"the image adds {added_mb:.1f} MB to {image.base}"


#: What the OCR image (NOTRACE_EXTRAS=ocr) may add on top of the default image's bound:
#: tesserocr's wheel (Tesseract, Leptonica and their image libraries, about 34 MB) and
#: the English model (4 MB). Measured: see the printed line.
MAX_OCR_EXTRA_MB = 45

OCR_INSIDE = r"""
import io, json, sys
sys.modules["tests"] = None  # nothing of the test suite is in the image
import pikepdf
from PIL import Image, ImageDraw, ImageFont
from notrace.operations import OPERATIONS, ocr_engine
from notrace.operations.child import run
image = Image.new("L", (1275, 1650), 255)  # a Letter page at 150 dpi
ImageDraw.Draw(image).text((150, 400), "Searchable invoice 2026", fill=0,
                           font=ImageFont.load_default(size=64))
scan = io.BytesIO()
image.save(scan, format="PDF", resolution=150)
answer = run([memoryview(scan.getvalue())], {"operation": "ocr", "max_pages": 10,
             "params": OPERATIONS["ocr"].validate({"dpi": "150"})})
text = run([memoryview(bytes(answer[1]))], {"operation": "text", "max_pages": 10,
           "params": OPERATIONS["text"].validate({})})
print(json.dumps({"available": ocr_engine.available(), "languages": ocr_engine.languages(),
                  "report": json.loads(answer[0])["report"],
                  "text": json.loads(bytes(text[1]))["pages"][0]["text"]}))
"""

OCR_ABSENT = r"""
import importlib.util, json
from notrace.operations import OPERATIONS, ocr_engine
print(json.dumps({"tesserocr": importlib.util.find_spec("tesserocr") is not None,
                  "available": ocr_engine.available(), "ocr": "ocr" in OPERATIONS}))
"""


def _python(image, script: str) -> dict:
    return _json(docker("run", "--rm", "-i", "--network", "none", "--entrypoint", "python3",
                        image.tag, "-", input=script))


def test_the_default_image_has_no_ocr(image):
    facts = _python(image, OCR_ABSENT)
    assert facts == {"tesserocr": False, "ocr": False,
                     "available": [False, "tesserocr is not installed "
                                          "(pip install 'notrace[ocr]')"]}


def test_the_ocr_image_recognises_text_and_its_size(ocr_image, image):
    added_mb = (ocr_image.size_bytes - ocr_image.base_size_bytes) / 1e6
    over_default_mb = (ocr_image.size_bytes - image.size_bytes) / 1e6
    print(f"OCR image {ocr_image.tag}: {ocr_image.size_bytes / 1e6:.1f} MB, added "
          f"{added_mb:.1f} MB to its base, {over_default_mb:.1f} MB more than the default "
          f"image, built in {ocr_image.build_s:.0f} s")
    assert over_default_mb <= MAX_OCR_EXTRA_MB
    facts = _python(ocr_image, OCR_INSIDE)
    assert facts["available"][0] is True and facts["languages"] == ["eng"]
    assert facts["report"]["words"] == 3 and facts["report"]["pages"] == 1
    assert "Searchable invoice 2026" in facts["text"]


def test_image_metadata(image):
    config = json.loads(docker("image", "inspect", image.tag).stdout)[0]["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["ExposedPorts"] == {"8000/tcp": {}}
    assert not config.get("Volumes"), "the image declares a VOLUME"
    assert config["Entrypoint"][:4] == ["notrace", "serve", "--host", "0.0.0.0"]
    health = " ".join(config["Healthcheck"]["Test"])
    assert "/health" in health and "urllib" in health and "curl" not in health


IMAGE_CONTENTS = r"""
import ctypes.util, importlib.util, json, os, shutil, sys
found = []
for top in ("/", "/app", "/opt/notrace", "/src", "/tmp"):
    if os.path.isdir(top):
        for name in os.listdir(top):
            if name in ("tests", "fuzz", "bench", ".git", ".env", ".pytest_cache", ".hypothesis"):
                found.append(os.path.join(top, name))
site = [p for p in sys.path if p.endswith("site-packages")]
for s in site:
    for pkg in ("notrace", "sandbox"):
        for name in ("tests", "fuzz", "bench"):
            if os.path.exists(os.path.join(s, pkg, name)):
                found.append(os.path.join(s, pkg, name))
print(json.dumps({
    "compilers": [c for c in ("gcc", "cc", "c++", "clang", "make", "ld") if shutil.which(c)],
    "pip_in_venv": importlib.util.find_spec("pip") is not None,
    "pip_cache": [p for p in ("/root/.cache/pip", "/nonexistent/.cache/pip") if os.path.exists(p)],
    "found": found,
    "seccomp_lib": ctypes.util.find_library("seccomp"),
    "imports": [importlib.util.find_spec(m) is not None for m in ("notrace", "sandbox", "pyseccomp")],
    "app": os.path.isdir("/app"),
}))
"""


def test_image_holds_only_the_runtime(image):
    facts = _json(docker("run", "--rm", "-i", "--network", "none", "--entrypoint", "python3",
                         image.tag, "-", input=IMAGE_CONTENTS))
    assert facts["compilers"] == [], "compilers in the final image"
    assert facts["pip_in_venv"] is False, "pip left in the venv"
    assert facts["pip_cache"] == [] and facts["found"] == []
    assert facts["seccomp_lib"], "libseccomp missing at runtime"
    assert facts["imports"] == [True, True, True] and facts["app"]


# ---- the running container ----

IDENTITY = r"""
import json, os
def status(pid):
    return {k: v.strip() for k, v in (l.split(":", 1) for l in open(f"/proc/{pid}/status")
            if ":" in l)}
one = status(1)
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(),
                  "pid1_cmdline": open("/proc/1/cmdline", "rb").read().split(b"\0")[1].decode(),
                  "pid1": {k: one[k] for k in ("Uid", "Gid", "Seccomp", "NoNewPrivs", "CapEff",
                                               "CapPrm", "CapInh", "CapBnd", "CapAmb")}}))
"""


def test_healthy_under_compose(service):
    state = service.inspect()["State"]
    assert state["Running"] and state["Health"]["Status"] == "healthy", state


def test_runs_as_10001_with_seccomp_no_new_privs_and_no_capabilities(service):
    facts = _json(service.probe(IDENTITY))
    assert facts["uid"] == UID and facts["gid"] == UID
    pid1 = facts["pid1"]
    assert pid1["Uid"].split() == [str(UID)] * 4, pid1["Uid"]
    assert pid1["Seccomp"] == "2"                          # filter mode
    assert pid1["NoNewPrivs"] == "1"
    for cap in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"):
        assert int(pid1[cap], 16) == 0, f"{cap} = {pid1[cap]}"
    assert facts["pid1_cmdline"].endswith("notrace"), "PID 1 is not the server"


WRITES = r"""
import errno, json, os
out = {}
for d in ("/", "/app", "/etc", "/opt/notrace", "/usr/local/bin", "/var"):
    try:
        with open(os.path.join(d, "notrace-probe"), "w"):
            pass
        out[d] = "written"
    except OSError as e:
        out[d] = errno.errorcode[e.errno]
with open("/tmp/probe", "w") as f:
    f.write("in memory")
out["/tmp"] = open("/tmp/probe").read()
os.unlink("/tmp/probe")
mounts = {}
for line in open("/proc/mounts"):
    dev, path, fstype, opts = line.split()[:4]
    mounts[path] = [fstype, opts.split(",")]
writable = []
for path in mounts:
    try:
        p = os.path.join(path, ".notrace-w")
        with open(p, "w"):
            pass
        os.unlink(p)
        writable.append(path)
    except OSError:
        pass
print(json.dumps({"writes": out, "mounts": mounts, "writable": writable,
                  "tmp_mode": oct(os.stat("/tmp").st_mode & 0o7777)}))
"""


def test_root_is_read_only_and_tmp_is_the_only_writable_place(service):
    facts = _json(service.probe(WRITES))
    writes = facts["writes"]
    for d in ("/", "/app", "/etc", "/opt/notrace", "/usr/local/bin", "/var"):
        assert writes[d] == "EROFS", f"write to {d}: {writes[d]}"
    assert writes["/tmp"] == "in memory"
    mounts = facts["mounts"]
    assert "ro" in mounts["/"][1]
    fstype, opts = mounts["/tmp"]
    assert fstype == "tmpfs", mounts["/tmp"]
    assert {"rw", "nosuid", "nodev", "noexec", "size=65536k"} <= set(opts), opts
    assert facts["tmp_mode"] == "0o1777"     # tmpfs shows mode= only when not the default
    # ipc: none leaves no /dev/shm; /dev/mqueue belongs to the container's private IPC
    # namespace (memory only, gone with it). Nothing else may be writable.
    assert set(facts["writable"]) <= {"/tmp", "/dev/mqueue"}, f"writable: {facts['writable']}"
    assert "/dev/shm" not in mounts


def test_inspect_shows_no_mounts_no_volumes_and_the_limits(service):
    info = service.inspect()
    host = info["HostConfig"]
    assert info["Mounts"] == [], info["Mounts"]
    assert not info["Config"].get("Volumes")
    assert not host.get("Binds") and not host.get("VolumesFrom") and not host.get("Mounts")
    assert host["Tmpfs"] == {"/tmp": "size=64m,mode=1777,noexec,nosuid,nodev"}
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert any(o.startswith("seccomp=") and '"defaultAction"' in o for o in host["SecurityOpt"]), \
        "the seccomp profile is not the repo's"
    assert host["Memory"] == MEM_LIMIT and host["MemorySwap"] == MEM_LIMIT
    assert host["NanoCpus"] > 0 and host["PidsLimit"] > 0
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert host["IpcMode"] == "none"
    assert not host.get("Privileged")
    assert info["Config"]["User"] == f"{UID}:{UID}"


SYSCALLS = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
CLONE_NEWUSER, SIGCHLD = 0x10000000, 17
calls = {  # x86_64 numbers
    "unshare": (272, CLONE_NEWUSER), "keyctl": (250, 0, 0, 0, 0, 0),
    "io_uring_setup": (425, 1, 0), "ptrace": (101, 0, 1, 0, 0), "mount": (165, 0, 0, 0, 0, 0),
    "setns": (308, 0, 0), "bpf": (321, 0, 0, 0), "perf_event_open": (298, 0, 0, -1, -1, 0),
    "userfaultfd": (323, 0), "clone_newuser": (56, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0),
    "clone3": (435, 0, 0),
}
out = {}
for name, (nr, *args) in calls.items():
    ctypes.set_errno(0)
    r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    if r == 0 and name.startswith("clone"):
        os._exit(0)                       # a child: must never happen
    out[name] = "ok" if r >= 0 else os.strerror(ctypes.get_errno())
print(json.dumps(out))
"""


def test_calls_outside_the_profile_are_refused(service):
    if os.uname().machine != "x86_64":
        pytest.skip("the probe uses x86_64 system call numbers")
    out = _json(service.probe(SYSCALLS))
    for name, result in out.items():
        expected = "Function not implemented" if name == "clone3" else "Operation not permitted"
        assert result == expected, f"{name}: {result}"


READY = r"""
import json, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:8000/ready", timeout=10).read().decode())
"""


def test_the_sandbox_is_confined_inside_the_profile(service):
    layers = {l["name"]: l for l in _json(service.probe(READY))["layers"]}
    for name in ("privileges", "rlimits", "landlock", "seccomp"):
        assert layers[name]["available"], layers[name]


PAGE = r"""
import json, urllib.request
out = {}
for path in ("/", "/app.js", "/app.css"):
    with urllib.request.urlopen("http://127.0.0.1:8000" + path, timeout=10) as r:
        out[path] = [r.status, r.headers["Content-Type"], r.read().decode()]
print(json.dumps(out))
"""


def test_the_web_page_and_its_assets_are_in_the_image(service):
    """app.js and app.css are package data: the installed (not editable) package has them."""
    served = _json(service.probe(PAGE))
    assert served["/"][:2] == [200, "text/html; charset=utf-8"]
    assert 'src="/app.js"' in served["/"][2]
    static = ROOT / "notrace" / "web" / "static"
    for name, media_type in (("app.js", "text/javascript"), ("app.css", "text/css")):
        status, content_type, body = served[f"/{name}"]
        assert status == 200 and content_type.startswith(media_type)
        assert body == (static / name).read_text()


def test_a_real_merge_over_http_inside_the_container(service):
    out = service.workload("merge")
    assert out["status"] == 200 and not out["bad"], out
    pdf = base64.b64decode(out["pdf_b64"])
    assert pdf.startswith(b"%PDF-")
    pikepdf = pytest.importorskip("pikepdf")
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        assert len(doc.pages) == 5


def test_corpus_through_the_container_answers_2xx_or_4xx(service):
    if not CORPUS.is_dir():
        unavailable(f"no corpus at {CORPUS}")
    expected = sum(1 for p in CORPUS.iterdir() if p.suffix.lower() == ".pdf")
    started = time.monotonic()
    out = service.workload("corpus", "--corpus", str(CORPUS), "--concurrency", "2",
                           timeout=360)
    print(f"corpus: {out['files']} files in {time.monotonic() - started:.0f} s: {out['statuses']}")
    assert out["files"] == expected
    assert out["bad"] == [], out["bad"][:10]
    assert all(s.isdigit() and 200 <= int(s) < 500 for s in out["statuses"]), out["statuses"]
    assert service.inspect()["State"]["Health"]["Status"] == "healthy"


def test_verify_container_script_passes_on_the_running_container(service):
    result = run("bash", str(ROOT / "deploy" / "verify-container.sh"), service.container,
                 check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout


HOG = r"""
import sys
hoard, mb = [], 0
while True:
    hoard.append(b"\x01" * (16 << 20))
    mb += 16
    print(mb, flush=True)
"""
CGROUP_LIMIT = r"""
import os
for p in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
    if os.path.exists(p):
        print(open(p).read().strip())
        break
"""


def test_memory_hog_is_oom_killed_within_the_limit_and_service_recovers(service):
    assert service.probe(CGROUP_LIMIT).stdout.strip() == str(MEM_LIMIT)
    pid_before = service.pid()
    hog = docker("exec", "-i", service.container, "python3", "-", input=HOG, check=False,
                 timeout=120)
    reached_mb = int(hog.stdout.split()[-1]) if hog.stdout.split() else 0
    assert hog.returncode == 137, f"hog exited {hog.returncode} after {reached_mb} MB"
    assert reached_mb <= MEM_LIMIT >> 20, f"the hog got {reached_mb} MB past a {MEM_LIMIT >> 20} MiB limit"
    out = service.workload("wait", timeout=90)
    assert out["statuses"] == {"200": 1}, out
    assert service.workload("merge")["status"] == 200
    state = service.inspect()["State"]
    assert state["Running"], state
    print(f"hog killed at {reached_mb} MB; server pid {pid_before} -> {state['Pid']}")


ZOMBIES_AFTER_FORK_SERVER_DEATH = r"""
import os, signal, time
def status(pid):
    try:
        return dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    except OSError:
        return {}
def children_of(ppid):
    return [int(p) for p in os.listdir("/proc") if p.isdigit()
            and status(p).get("PPid", "").strip() == str(ppid)]
fork_server = [p for p in children_of(1) if b"forkserver" in open(f"/proc/{p}/cmdline", "rb").read()]
assert len(fork_server) == 1, fork_server
grandchildren = children_of(fork_server[0])
assert grandchildren, "no warm children under the fork server"
os.kill(fork_server[0], signal.SIGKILL)
time.sleep(3)
zombies = [p for p in os.listdir("/proc") if p.isdigit() and status(p).get("State", "").strip().startswith("Z")]
alive = [p for p in grandchildren if status(p)]
print(len(grandchildren), zombies, alive)
"""


WAIT_READY = r"""
import time, urllib.request, urllib.error
for _ in range(200):
    try:
        print(urllib.request.urlopen("http://127.0.0.1:8000/ready", timeout=2).status); break
    except (urllib.error.URLError, OSError):
        time.sleep(0.2)
"""


def test_fork_server_death_leaves_no_zombie_and_service_recovers(service):
    # PID 1 in the container is the server itself (no init): the dead fork server's
    # children are re-parented to it, die of PDEATHSIG, and must be reaped by it.
    out = service.probe(ZOMBIES_AFTER_FORK_SERVER_DEATH).stdout.split(maxsplit=1)
    assert int(out[0]) >= 1
    assert out[1].strip() == "[] []", out
    ready = service.probe(WAIT_READY, timeout=60).stdout.strip()
    assert ready == "200", ready
    assert service.workload("merge")["status"] == 200


def test_sigterm_drains_then_down_leaves_nothing_and_up_starts_clean(service):
    # A marker in /tmp: it must not survive.
    service.probe("open('/tmp/marker', 'w').write('left behind?')")
    container = service.container
    project_label = f"label=com.docker.compose.project={service.project}"
    started = time.monotonic()
    service.compose("stop", "--timeout", "45", timeout=90)
    stopped_s = time.monotonic() - started
    state = json.loads(docker("inspect", container).stdout)[0]["State"]
    assert state["ExitCode"] == 0, f"exit code {state['ExitCode']} after SIGTERM"
    assert stopped_s < 30, f"SIGTERM took {stopped_s:.0f} s"
    service.compose("down", "--remove-orphans", timeout=90)
    assert docker("ps", "-aq", "--filter", project_label).stdout.split() == []
    assert docker("volume", "ls", "-q", "--filter", project_label).stdout.split() == []
    assert docker("network", "ls", "-q", "--filter", project_label).stdout.split() == []
    assert run("docker", "inspect", container, check=False).returncode != 0
    service.up()
    assert service.container != container
    listing = service.probe("import os, json; print(json.dumps(sorted(os.listdir('/tmp'))))")
    assert json.loads(listing.stdout) == [], f"/tmp after a new up: {listing.stdout}"
    assert service.inspect()["State"]["Health"]["Status"] == "healthy"
