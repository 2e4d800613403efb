"""Red team, wave 5: today's two changes attacked with real parts.

- sandbox.inputs keeps each job input's sealed memfd open for the entry, and notrace's
  pdf_source hands it to pikepdf (AccessMode.mmap): a hostile entry holding those fds
  (and the dups of its mappings) can neither write, grow, shrink, map writable nor
  reseal any of them; moving their shared file offsets changes no later job; a job sees
  no memfd of the canary; 64 inputs on the mapped path fit NOFILE; the mapped path gives
  the very answers (problem codes and bytes) the io.BytesIO path gives, on the corpus and
  on damaged copies of it, and needs no more memory than it.
- sandbox.spawner forks children with libc fork() (no os.fork hooks): thread pools,
  logging from threads, random and tempfile names of their own, signal state as before.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import time
from pathlib import Path

import pikepdf
import pytest

from notrace import pipeline
from notrace.operations import OPERATIONS
from notrace.operations.child import run as in_process, sample_pdf
from sandbox import Limits, Sandbox
from sandbox.layers.rlimits import MAX_JOB_FDS, NOFILE
from tests.sandbox.entries import CANARY_MARK

pytestmark = pytest.mark.timeout(120)

ENTRY = "tests.attack.wave5_entries:dispatch"
LIMITS = Limits(memory_mb=512, cpu_s=10, wall_s=20, output_mb=64)
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"


@pytest.fixture(scope="module")
def sb():
    with Sandbox(ENTRY, limits=LIMITS, workers=3, queue=16,
                 canary="tests.sandbox.entries:probe_canary") as sandbox:
        yield sandbox


def _ok(result):
    assert result.status == "ok", result
    return result.outputs


def _job(operation: str, raw: dict | None = None, max_pages: int = 1000) -> dict:
    return {"operation": operation, "params": OPERATIONS[operation].validate(raw or {}),
            "max_pages": max_pages}


def _answer(outputs) -> tuple:
    """A notrace answer as a comparable key: its problem code, or its body's hash."""
    manifest = json.loads(bytes(outputs[0]))
    if "problem" in manifest:
        return ("problem", manifest["problem"])
    return ("ok", hashlib.sha256(bytes(outputs[1])).hexdigest())


# -- 1. the kept input memfds, in a hostile entry's hands ------------------------------------

_HOLDING_TRIES = ["pwrite", "write_end", "map_shared_write", "add_seal_seal", "reopen_rw"]


def test_kept_input_memfds_and_their_mapping_dups_resist_every_change(sb):
    data = [b"%PDF-1.7 first input", b"second input", b"x" * 70_000]
    seen = json.loads(_ok(sb.run_sync(data, {"do": "tamper", "tries": _HOLDING_TRIES}))[0])
    assert seen["kept"] == 3
    heads = {item[:16].hex() for item in data}
    inputs = [m for m in seen["memfds"].values() if m["input"]]
    dups = [m for m in seen["memfds"].values() if not m["input"] and m["seals"] == 15]
    assert len(inputs) == 3 and len(dups) == 3, seen       # each input: its fd, its dup
    for memfd in inputs + dups:
        tries = memfd["tries"]
        assert tries["pwrite"] == tries["write_end"] == "EFBIG", memfd   # RLIMIT_FSIZE 0
        assert tries["map_shared_write"] == "EPERM", memfd              # F_SEAL_WRITE
        assert tries["add_seal_seal"] == "EPERM", memfd                 # F_SEAL_SEAL
        assert memfd["head"] in heads and memfd["size_after"] == memfd["size"], memfd
    # The only other memfd is the child's own output (writable, sized by the fork server).
    others = [m for m in seen["memfds"].values() if not m["input"] and m["seals"] != 15]
    assert len(others) == 1 and others[0]["size"] >= LIMITS.output_mb << 20, others


@pytest.mark.parametrize("attempt", ["shrink", "grow", "fallocate"])
def test_resizing_a_kept_input_ends_that_job_only(sb, attempt):
    result = sb.run_sync([b"%PDF-1.7 to resize"], {"do": "tamper", "tries": [attempt]})
    assert result.status == "violation", result             # seccomp refuses the call
    after = _ok(sb.run_sync([b"%PDF-1.7 innocent", b"two"], {"do": "input_files"}))
    files = json.loads(after[0])
    assert files["known"] == 2 and all(f["reads_the_same"] for f in files["inputs"]), files


def test_moved_offsets_and_the_canary_leave_later_jobs_their_own_bytes(sb):
    # A hostile job moves every memfd's file offset (a description is shared by all its
    # holders); children run the canary between jobs; each later job must still read
    # exactly its own inputs, through its fds and through pikepdf's mapping of them.
    pdfs = [sample_pdf(n) for n in (1, 2, 3)]
    for round_ in range(6):
        _ok(sb.run_sync([b"%%PDF-hostile %d" % round_] * 3, {"do": "tamper",
                                                            "tries": ["pwrite"]}))
        time.sleep(0.05)                    # let an idle child run its canary
        files = json.loads(_ok(sb.run_sync([b"%%PDF-mine %d" % round_],
                                           {"do": "input_files"}))[0])
        assert files["known"] == 1 and files["inputs"][0]["reads_the_same"], files
        kinds = json.loads(_ok(sb.run_sync(pdfs, {"do": "source_kinds"}))[0])
        assert [k["pages"] for k in kinds] == [1, 2, 3], kinds
        assert {k["kind"] for k in kinds} == {"FileIO"}, kinds   # the mapped path, taken


def test_a_job_reaches_no_memfd_but_its_inputs_and_output_after_the_canary(sb):
    canary_ran = 0
    for _ in range(20):
        time.sleep(0.05)
        mine = [b"%PDF-census one", b"census two"]
        census = json.loads(_ok(sb.run_sync(mine, {"do": "memfd_census"}))[0])
        heads = {item.hex() for item in mine}
        for memfd in census["census"]:
            assert CANARY_MARK.hex() not in memfd["head"], census
            assert memfd["head"] in heads or memfd["seals"] != 15, census
        assert census["registered"] == 2
        files = json.loads(_ok(sb.run_sync([b"probe"], {"do": "input_files"}))[0])
        canary_ran += files["after_canary"]
        if canary_ran >= 2:
            break
    assert canary_ran >= 2                 # the census did run in children past a canary


# -- 2. legitimate jobs at the limits on the mapped path -------------------------------------

def test_a_merge_of_the_most_inputs_all_mapped_fits_the_descriptor_limit(sb):
    pdfs = [sample_pdf(2) for _ in range(MAX_JOB_FDS)]
    outputs = _ok(sb.run_sync(pdfs, {"do": "notrace_run", "job": _job("merge")}))
    manifest = json.loads(bytes(outputs[0]))
    assert "problem" not in manifest, manifest
    with pikepdf.open(io.BytesIO(bytes(outputs[1]))) as merged:
        assert len(merged.pages) == 2 * MAX_JOB_FDS
    fds = json.loads(bytes(outputs[-1]))
    assert fds["open_fds"] <= NOFILE - 8, fds      # headroom left after 64 mapped inputs


@pytest.mark.parametrize("steps", [
    [{"operation": "merge"}, {"operation": "rotate", "params": {"angle": 90}},
     {"operation": "delete", "params": {"pages": "2"}}, {"operation": "info"}],
    [{"operation": "merge"}, {"operation": "compress"}, {"operation": "text"}],
], ids=["merge-rotate-delete-info", "merge-compress-text"])
def test_a_pipeline_over_the_most_mapped_inputs_answers_as_in_process(sb, steps):
    most = OPERATIONS["merge"].inputs.max                   # what the service lets through
    pdfs = [sample_pdf(1 + n % 4) for n in range(most)]
    job = pipeline.parse(json.dumps(steps), len(pdfs)).job_params(1000)
    mapped = _ok(sb.run_sync(pdfs, {"do": "notrace_run", "job": job}))
    local = in_process([memoryview(p) for p in pdfs], job)
    assert _answer(mapped[:-1]) == _answer(local) and _answer(local)[0] == "ok"
    assert json.loads(bytes(mapped[-1]))["open_fds"] <= NOFILE - 8


@functools.cache
def _dense(pages: int) -> bytes:
    return sample_pdf(pages)


def _least_memory_mb(entry_do: str, data: bytes, low: int, high: int) -> int:
    """The least memory_mb (to 2 MB) at which `info` of data succeeds through entry_do."""
    with Sandbox(ENTRY, limits=Limits(memory_mb=high, cpu_s=10, wall_s=20, output_mb=8),
                 workers=1, queue=4) as box:
        for _ in range(10):
            if high - low <= 2:
                break
            middle = (low + high) // 2
            result = box.run_sync([data], {"do": entry_do,
                                                   "job": _job("info", max_pages=50_000)},
                                  Limits(memory_mb=middle, cpu_s=10, wall_s=20, output_mb=8))
            if result.status == "ok" and "problem" not in json.loads(bytes(result.outputs[0])):
                high = middle
            else:
                assert result.status in ("ok", "memory"), result
                low = middle
        return high


def test_an_object_dense_input_needs_no_more_memory_mapped_than_copied():
    # 6 MB of 60,000 small objects (the mapped path): measured 72 MB mapped, 70 copied
    # (12 MB: 142 and 140), so the mapping costs a constant ~2 MB, not the input's size.
    data = _dense(20_000)
    mapped = _least_memory_mb("notrace_run", data, 16, 256)
    copied = _least_memory_mb("copied_run", data, 16, 256)
    assert copied > 16 and mapped <= copied + 6, (mapped, copied)


# -- 3. the mapped path against the copy, on hostile and damaged PDFs ------------------------

def _variants(data: bytes):
    yield "whole", data
    yield "half", data[:len(data) // 2]
    at = data.rfind(b"startxref")
    if at > 0:
        yield "startxref past the end", data[:at] + b"startxref\n%d\n%%%%EOF\n" % (len(data) * 3)
    yield "no header", b"garbage\n" + data[8:]


def test_the_corpus_and_its_damaged_copies_answer_alike_mapped_and_copied(sb):
    assert CORPUS.is_dir(), CORPUS
    files = sorted(p for p in CORPUS.iterdir() if p.suffix.lower() == ".pdf")
    assert len(files) > 100
    compared, differ = 0, []
    for path in files:
        for name, data in _variants(path.read_bytes()):
            job = _job("info")
            local = _answer(in_process([memoryview(data)], job))
            result = sb.run_sync([data], {"do": "notrace_run", "job": job})
            mapped = _answer(result.outputs[:-1]) if result.status == "ok" \
                else ("status", result.status)
            compared += 1
            if mapped != local:
                differ.append((path.name, name, local, mapped))
    assert compared > 400 and not differ, differ[:10]


# -- 4. children forked without os.fork's hooks ----------------------------------------------

def test_bare_forked_children_have_working_threads_logging_and_their_own_randomness(sb):
    seen = [json.loads(_ok(sb.run_sync([], {"do": "bare_fork_facts"}))[0]) for _ in range(5)]
    assert len({facts["random"] for facts in seen}) == 5, seen
    assert len({facts["temp_name"] for facts in seen}) == 5, seen
    for facts in seen:
        assert facts["squares"] and facts["logged"], facts
        assert facts["sigterm"] and facts["sigint_python"] and facts["blocked"] == [], facts
        assert facts["threads_after"] == 1, facts


@pytest.mark.parametrize("do", ["spin", "spin_in_threads"])
def test_a_cpu_spinning_bare_forked_child_still_ends_at_its_cpu_limit(sb, do):
    limits = Limits(memory_mb=256, cpu_s=1, wall_s=10, output_mb=8)
    started = time.monotonic()
    result = sb.run_sync([], {"do": do}, limits)
    assert result.status == "cpu", result
    assert time.monotonic() - started < 8
    assert _ok(sb.run_sync([b"after"], {"do": "input_files"}))


def test_a_crash_in_a_bare_forked_childs_thread_is_that_jobs_crash_only(sb):
    result = sb.run_sync([b"x"], {"do": "segfault_in_thread"})
    assert result.status == "crashed" and result.signal == 11, result
    assert _ok(sb.run_sync([b"after"], {"do": "input_files"}))


def test_notraces_own_canary_on_the_mapped_path_leaves_the_job_no_descriptor():
    # The canary (a merge of two PDFs: pikepdf maps both canary memfds, shared by every
    # child) runs in an idle child before its job: nothing of it may stay open for the
    # job (its fds, its mappings' dups, pikepdf's maps), or 64 inputs would not fit.
    with Sandbox(ENTRY, limits=LIMITS, workers=1, queue=4,
                 canary="tests.attack.wave5_entries:notrace_canary") as box:
        box.run_sync([], {"do": "nothing"})
        for _ in range(20):
            time.sleep(0.05)
            census = json.loads(_ok(box.run_sync([b"%PDF-mine"], {"do": "memfd_census"}))[0])
            if census["after_canary"] >= 2:     # the fork server's run, then this child's
                break
        assert census["after_canary"] >= 2, census
        heads = sorted(m["head"] for m in census["census"] if m["seals"] == 15)
        assert heads == [b"%PDF-mine".hex()] * 2, census      # the input and its map's dup
        assert census["registered"] == 1 and census["open_fds"] <= 8, census


def _edge_inputs() -> dict[str, bytes]:
    base = sample_pdf(3)
    cases = {"all NULs": b"\0" * 4096, "header and EOF only": b"%PDF-1.7\n%%EOF\n",
             "two documents back to back": base + base}
    for size in (1, 5, 1023, 4095, 4096, 4097, 8192, 65536):     # around page boundaries
        cases[f"header lines, {size} bytes"] = (b"%PDF-1.7\n" * (size // 9 + 1))[:size]
        if size > len(base):
            cases[f"NULs after, {size}"] = base + b"\0" * (size - len(base))
            cases[f"NULs before, {size}"] = b"\0" * (size - len(base)) + base
    return cases


def test_inputs_at_page_boundaries_and_odd_shapes_answer_alike_mapped_and_copied(sb):
    differ = []
    for name, data in _edge_inputs().items():
        job = _job("info")
        local = _answer(in_process([memoryview(data)], job))
        mapped = _answer(_ok(sb.run_sync([data], {"do": "notrace_run", "job": job}))[:-1])
        if mapped != local:
            differ.append((name, local, mapped))
    assert not differ, differ
