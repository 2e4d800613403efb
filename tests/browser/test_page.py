"""The web page at / in a real headless Chromium, against the real server and sandbox.

Runs in the test process; the browser and the server are subprocesses (conftest.py).
Files are made here with pikepdf (tests/pdfs.py: every page says which document it came
from), chosen through the page's own file input, and results are read back from the
browser's download directory.
"""
from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pikepdf
import pytest
from PIL import Image

from notrace.operations import OPERATIONS
from notrace.problems import TYPES
from notrace.web import NOTICE, PAGE_CSP
from tests.browser.conftest import BROWSER, WAIT_S
from tests.pdfs import (make_active_pdf, make_image_jpeg, make_image_png, make_pdf,
                        page_texts)
from tests.service.access import wait_until, write_keys
from tests.service.server import Server

try:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as visible
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError as exc:  # skipped like a missing browser (failed in CI)
    BROWSER.unavailable(f"selenium cannot be imported ({exc})")

pytestmark = pytest.mark.timeout(120)


# --- helpers --------------------------------------------------------------------------
def wait_for(page, css: str):
    return WebDriverWait(page, WAIT_S).until(
        visible.visibility_of_element_located((By.CSS_SELECTOR, css)), message=css)


def choose(page, operation: str) -> None:
    Select(page.find_element(By.ID, "operation")).select_by_value(operation)


def add_files(page, *paths: Path) -> None:
    page.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in paths))


def listed(page) -> list[str]:
    return [e.text for e in page.find_elements(By.CSS_SELECTOR, "#file-list li .name")]


def written(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def downloaded(folder: Path) -> Path:
    """The one file the browser saved into `folder`, once complete."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        done = [p for p in folder.iterdir() if not p.name.endswith(".crdownload")]
        if done and not any(p.name.endswith(".crdownload") for p in folder.iterdir()):
            assert len(done) == 1, done
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"nothing downloaded into {folder}: {list(folder.iterdir())}")


def run_and_wait(page, outcome: str = "#result"):
    page.find_element(By.ID, "run").click()
    return wait_for(page, outcome)


# --- the page itself ------------------------------------------------------------------
def test_page_is_self_contained_under_its_csp(page, web_server):
    reply = web_server.get("/")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/html")
    assert reply.headers["content-security-policy"] == PAGE_CSP
    assert "script-src 'self'" in PAGE_CSP and "unsafe-inline" not in PAGE_CSP
    html = reply.body.decode()
    assert "http://" not in html and "https://" not in html
    for name, media_type in (("app.js", "text/javascript"), ("app.css", "text/css")):
        asset = web_server.get(f"/{name}")
        assert asset.status == 200 and asset.headers["content-type"].startswith(media_type)
        assert b"http://" not in asset.body and b"https://" not in asset.body
    # No inline script, style or event handler in what the browser actually has.
    inline = page.execute_script("""
        const bad = [];
        for (const s of document.scripts) if (!s.src) bad.push('inline <script>');
        if (document.querySelector('style')) bad.push('<style>');
        for (const e of document.querySelectorAll('*')) {
          if (e.hasAttribute('style')) bad.push('style= on ' + e.tagName);
          for (const a of e.attributes) if (a.name.startsWith('on')) bad.push(a.name);
        }
        return bad;""")
    assert inline == []
    origin = f"http://127.0.0.1:{web_server.port}/"
    loaded = page.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert sorted(loaded) == [origin + "app.css", origin + "app.js"]
    # The script ran (it fills the summary) and nothing broke the policy.
    assert page.find_element(By.ID, "summary").text == OPERATIONS["merge"].summary
    assert page.find_element(By.ID, "notice").text == NOTICE
    severe = [e["message"] for e in page.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []


def test_controls_come_from_the_declarations(page):
    controls = page.execute_script("""
        return Array.from(document.querySelectorAll('fieldset.params [name]')).map(e => ({
          id: e.id, name: e.name, tag: e.tagName.toLowerCase(), type: e.type,
          min: e.getAttribute('min'), max: e.getAttribute('max'), value: e.value,
          checked: e.checked, required: e.required, dflt: e.dataset.default,
          options: e.tagName === 'SELECT' ? Array.from(e.options).map(o => o.value) : null,
          fieldset: e.closest('fieldset').dataset.operation,
          help: document.getElementById(e.getAttribute('aria-describedby')).textContent}));""")
    by_id = {c["id"]: c for c in controls}
    assert len(by_id) == sum(len(op.params) for op in OPERATIONS.values())
    for op in OPERATIONS.values():
        for param in op.params:
            c = by_id[f"p-{op.name}-{param.name}"]
            assert (c["name"], c["fieldset"]) == (param.name, op.name)
            assert param.description in c["help"]
            default = param.json_schema().get("default")
            assert c["dflt"] == (default or "")
            if param.choices is not None:
                assert c["tag"] == "select"
                assert [o for o in c["options"] if o] == [str(x) for x in param.choices]
                assert c["value"] == (default or "")
            elif param.kind == "boolean":
                assert c["type"] == "checkbox" and c["checked"] == param.default
            elif param.kind in ("integer", "number"):
                assert c["type"] == "number"
                assert c["value"] == (default or "")
                for bound, attr in ((param.minimum, "min"), (param.maximum, "max")):
                    assert (c[attr] is None) == (bound is None)
                    if bound is not None:
                        assert float(c[attr]) == bound
            elif param.kind == "password":
                assert c["type"] == "password" and param.secret
            else:
                assert c["type"] == "text" and c["value"] == (default or "")
            assert c["required"] == (param.required and param.kind != "boolean")
    picker = page.find_element(By.ID, "files")
    for op in OPERATIONS.values():
        choose(page, op.name)
        accepted = picker.get_attribute("accept").split(",")
        assert set(op.inputs.media_types) <= set(accepted)
        assert picker.get_property("multiple") == (op.inputs.max > 1)
        assert page.find_element(By.ID, "summary").text == op.summary


def test_every_control_is_labelled(page, tmp_path):
    add_files(page, written(tmp_path, "one.pdf", make_pdf(1)),
              written(tmp_path, "two.pdf", make_pdf(1)))
    unlabelled = page.execute_script("""
        const out = [];
        for (const e of document.querySelectorAll('input, select, textarea, button')) {
          const label = Array.from(e.labels || []).map(l => l.textContent.trim()).join('')
            || (e.getAttribute('aria-label') || '').trim()
            || (e.tagName === 'BUTTON' ? e.textContent.trim() : '');
          if (!label) out.push(e.id || e.outerHTML);
        }
        return out;""")
    assert unlabelled == []
    ids = page.execute_script(
        "return Array.from(document.querySelectorAll('[id]')).map(e => e.id)")
    assert len(ids) == len(set(ids))


# --- using it -------------------------------------------------------------------------
def test_merge_two_files_reordered_with_the_keyboard(page, web_server, tmp_path, downloads):
    first = written(tmp_path, "first.pdf", make_pdf(2, marker="A"))
    second = written(tmp_path, "second.pdf", make_pdf(1, marker="B"))
    choose(page, "merge")
    add_files(page, first, second)
    assert listed(page) == ["first.pdf", "second.pdf"]
    page.find_element(By.CSS_SELECTOR, 'button[aria-label="Move second.pdf up"]').send_keys(
        Keys.ENTER)
    assert listed(page) == ["second.pdf", "first.pdf"]
    # Focus stays on the file that moved (its "up" is now disabled: its "down" has it).
    assert page.switch_to.active_element.get_attribute("aria-label") == "Move second.pdf down"
    run_and_wait(page)
    result = downloaded(downloads)
    expected_name = web_server.post("merge", [second.read_bytes(), first.read_bytes()]).headers[
        "content-disposition"].split('filename="')[1].rstrip('"')
    assert result.name == expected_name
    assert page_texts(result.read_bytes()) == ["B page 1", "A page 1", "A page 2"]
    assert page.find_element(By.ID, "progress").get_attribute("value") == "100"
    assert page.find_element(By.ID, "download").get_attribute("download") == expected_name


def test_images_to_pdf_in_the_order_listed(page, tmp_path, downloads):
    wide = written(tmp_path, "wide.png", make_image_png(60, 20))
    tall = written(tmp_path, "tall.jpg", make_image_jpeg(20, 60))
    choose(page, "from-images")
    add_files(page, wide, tall)
    page.find_element(By.CSS_SELECTOR, 'button[aria-label="Move wide.png down"]').click()
    assert listed(page) == ["tall.jpg", "wide.png"]
    run_and_wait(page)
    with pikepdf.open(downloaded(downloads)) as pdf:
        sizes = [tuple(float(v) for v in p.mediabox[2:]) for p in pdf.pages]
    assert sizes[0][0] < sizes[0][1] and sizes[1][0] > sizes[1][1]  # tall, then wide


def test_dropped_files_join_the_list(page):
    choose(page, "merge")
    page.execute_script("""
        const dt = new DataTransfer();
        for (const name of arguments[0])
          dt.items.add(new File(['%PDF-1.4'], name, {type: 'application/pdf'}));
        document.getElementById('drop').dispatchEvent(
          new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));""",
                        ["dropped-1.pdf", "dropped-2.pdf"])
    assert listed(page) == ["dropped-1.pdf", "dropped-2.pdf"]
    page.find_element(By.CSS_SELECTOR, 'button[aria-label="Remove dropped-1.pdf"]').click()
    assert listed(page) == ["dropped-2.pdf"]


def test_a_bad_file_shows_the_problem_title(page, tmp_path, downloads):
    choose(page, "info")
    add_files(page, written(tmp_path, "holiday.pdf", make_image_png()))
    problem = run_and_wait(page, "#problem")
    assert page.find_element(By.ID, "problem-title").text == TYPES["not-a-pdf"].title
    assert page.find_element(By.ID, "problem-detail").text
    assert "{" not in problem.text and '"type"' not in problem.text  # never raw JSON
    assert list(downloads.iterdir()) == []


def test_a_bad_parameter_names_it(page, tmp_path):
    choose(page, "select")
    add_files(page, written(tmp_path, "doc.pdf", make_pdf(2)))
    page.find_element(By.ID, "p-select-pages").send_keys("nine")
    run_and_wait(page, "#problem")
    assert page.find_element(By.ID, "problem-title").text == TYPES["bad-parameter"].title
    assert "pages" in page.find_element(By.ID, "problem-detail").text


def test_split_by_one_of_its_alternatives(page, tmp_path, downloads):
    """split takes exactly one of ranges/every: the untouched one must stay absent."""
    choose(page, "split")
    add_files(page, written(tmp_path, "four.pdf", make_pdf(4, marker="Q")))
    assert page.find_elements(By.CSS_SELECTOR, "#file-list button[data-action=up]") == []
    page.find_element(By.ID, "p-split-every").send_keys("2")
    run_and_wait(page)
    with zipfile.ZipFile(downloaded(downloads)) as archive:
        parts = [page_texts(archive.read(name)) for name in archive.namelist()]
    assert parts == [["Q page 1", "Q page 2"], ["Q page 3", "Q page 4"]]


def test_report_shown_in_words(page, tmp_path, downloads):
    choose(page, "sanitize")
    add_files(page, written(tmp_path, "active.pdf", make_active_pdf()))
    run_and_wait(page)
    report = page.find_element(By.ID, "report").text
    assert "removed" in report and "javascript: " in report and "{" not in report
    assert downloaded(downloads).suffix == ".pdf"


def test_metadata_set_one_field_and_delete_another(page, tmp_path, downloads):
    """Empty deletes, absent keeps: "send empty" is the page's way to say empty."""
    with pikepdf.open(io.BytesIO(make_pdf(1))) as pdf:
        pdf.docinfo["/Title"] = "Old title"
        pdf.docinfo["/Subject"] = "Kept subject"
        source = io.BytesIO()
        pdf.save(source)
    choose(page, "metadata")
    add_files(page, written(tmp_path, "titled.pdf", source.getvalue()))
    page.find_element(By.ID, "p-metadata-author").send_keys("Ann Author")
    page.find_element(By.CSS_SELECTOR, "label[for=p-metadata-title-empty]").click()
    assert not page.find_element(By.ID, "p-metadata-title").is_enabled()
    assert page.find_elements(By.ID, "p-crop-box-empty") == []
    run_and_wait(page)
    with pikepdf.open(downloaded(downloads)) as pdf:
        info = {str(k): str(v) for k, v in pdf.docinfo.items()}
    assert "/Title" not in info or info["/Title"] == ""
    assert info["/Author"] == "Ann Author" and info["/Subject"] == "Kept subject"


def test_secret_parameter_encrypts_and_stays_out_of_logs(page, web_server, tmp_path,
                                                         downloads):
    secret = "page-secret-7f3a"
    choose(page, "encrypt")
    add_files(page, written(tmp_path, "plain.pdf", make_pdf(1, marker="S")))
    page.find_element(By.ID, "p-encrypt-password").send_keys(secret)
    run_and_wait(page)
    data = downloaded(downloads).read_bytes()
    with pytest.raises(pikepdf.PasswordError):
        pikepdf.open(io.BytesIO(data))
    assert page_texts(data, password=secret) == ["S page 1"]
    assert not any(secret in line for line in web_server.lines)


def test_json_answer_shown_and_nothing_stored(page, tmp_path, downloads):
    choose(page, "info")
    add_files(page, written(tmp_path, "three.pdf", make_pdf(3)))
    run_and_wait(page)
    assert '"pages"' in page.find_element(By.ID, "json-result").text
    assert downloaded(downloads).suffix == ".json"
    assert page.get_cookies() == []
    storage = page.execute_async_script("""
        const done = arguments[arguments.length - 1];
        indexedDB.databases().then(dbs => done({
          local: localStorage.length, session: sessionStorage.length,
          cookie: document.cookie, idb: dbs.length}));""")
    assert storage == {"local": 0, "session": 0, "cookie": "", "idb": 0}


def test_readable_at_320_px_for_every_operation(page, tmp_path):
    page.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                         {"width": 320, "height": 640, "deviceScaleFactor": 1, "mobile": True})
    page.refresh()
    long_name = "a-long-file-name-without-any-space-that-must-wrap-somehow-" + "x" * 40 + ".pdf"
    add_files(page, written(tmp_path, long_name, make_pdf(1)))
    for name in OPERATIONS:
        choose(page, name)
        widths = page.execute_script(
            "const d = document.documentElement; return [d.scrollWidth, d.clientWidth]")
        assert widths[0] <= widths[1] == 320, (name, widths)


def test_screenshot_is_not_blank(page, tmp_path):
    choose(page, "watermark")
    add_files(page, written(tmp_path, "report.pdf", make_pdf(1)))
    shot = page.get_screenshot_as_png()
    (tmp_path / "page.png").write_bytes(shot)  # kept in pytest's tmp dir for a look
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    assert image.width >= 600 and image.height >= 600
    colours = image.getcolors(maxcolors=image.width * image.height)
    assert len(colours) > 100  # text, borders, the button, antialiasing
    commonest = max(count for count, _ in colours)
    assert commonest < 0.9 * image.width * image.height  # not one flat background


# --- with API keys on -----------------------------------------------------------------
@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    """Keys on, and one operation request per minute (burst 1) per key."""
    keys_file, keys = write_keys(tmp_path_factory.mktemp("keys"), "browser")
    server = Server({"NOTRACE_API_KEYS_FILE": str(keys_file), "NOTRACE_RATE_PER_MIN": "1",
                     "NOTRACE_RATE_BURST": "1"}).start()
    yield server, keys["browser"]
    server.stop()


def test_key_asked_on_401_kept_in_memory_and_sent(driver, keyed_server, tmp_path, downloads):
    server, key = keyed_server
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    driver.get(f"http://127.0.0.1:{server.port}/")   # the page itself needs no key
    assert not driver.find_element(By.ID, "key-field").is_displayed()
    choose(driver, "info")
    add_files(driver, written(tmp_path, "one.pdf", make_pdf(1)))
    run_and_wait(driver, "#key-field")
    assert driver.find_element(By.ID, "problem-title").text == TYPES["unauthorized"].title
    assert driver.switch_to.active_element.get_attribute("id") == "api-key"
    driver.switch_to.active_element.send_keys("ntk_not-a-key")
    run_and_wait(driver, "#problem")
    assert "refused" in driver.find_element(By.ID, "problem-detail").text
    key_input = driver.find_element(By.ID, "api-key")
    key_input.clear()
    key_input.send_keys(key)
    run_and_wait(driver)
    assert downloaded(downloads).suffix == ".json"
    wait_until(lambda: any(r.get("key") == "browser" and r.get("status") == 200
                           for r in server.log_records()),   # sent as Authorization: Bearer
               what="the keyed request's access line (it may follow the answer)")
    # The bucket is empty now: a readable 429 that says when to try again.
    run_and_wait(driver, "#problem")
    assert driver.find_element(By.ID, "problem-title").text == TYPES["rate-limited"].title
    assert "Try again in" in driver.find_element(By.ID, "problem-detail").text
    stored = driver.execute_script(
        "return [document.cookie, localStorage.length, sessionStorage.length]")
    assert stored == ["", 0, 0]
    assert driver.get_cookies() == []
