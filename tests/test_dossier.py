"""`alexnet-replay dossier`: the curator's page, its JSON and its RO-Crate (issue 16).

One dossier of ../shared/release (a partial copy) is built per module with the quick demo
(one epoch); a second, of a copy with one byte changed, reuses the first one's training run
(``--run``), so no second demo runs. The browser test opens the page in headless Chromium over
the DevTools protocol (``--remote-debugging-pipe``, the standard library only) and listens to
its console and its network.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("torch", reason="the replay's parity check needs the PyTorch port")
pytest.importorskip("sklearn", reason="scikit-learn (a test extra) ships the demo's digits")
rocrate = pytest.importorskip("rocrate.rocrate", reason="rocrate (the dossier extra) writes and reads the crate")

from alexnet_replay.cli import main  # noqa: E402
from alexnet_replay.dossier import build_dossier, facts  # noqa: E402
from alexnet_replay.errors import ReplayError  # noqa: E402
from alexnet_replay.original.manifest import RELEASE_TREE, load_manifest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CHANGED = "layers/layers-145.cfg"  # the file given one changed byte


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(release, tmp_path_factory):
    """(facts, DIR, seconds) of the quick dossier of ../shared/release."""
    out = tmp_path_factory.mktemp("dossier") / "d"
    started = time.perf_counter()
    dossier = build_dossier(release, out, quick=True)
    return dossier, out, time.perf_counter() - started


@pytest.fixture(scope="module")
def changed(release, built, tmp_path_factory):
    """(facts, DIR, copy) of a copy of the release folder with one byte of CHANGED altered, built by
    the CLI from the first dossier's training run (``--run``)."""
    base = tmp_path_factory.mktemp("changed")
    copy = base / "copy"
    shutil.copytree(release, copy, symlinks=True)
    target = copy / CHANGED
    data = bytearray(target.read_bytes())
    data[100] ^= 0x01
    target.write_bytes(bytes(data))
    run = next((built[1] / "replay" / "runs").iterdir())
    out = base / "d"
    assert main(["dossier", str(copy), "--out", str(out), "--run", str(run)]) == 0
    return json.loads((out / "dossier.json").read_text()), out, copy


class _Cells(HTMLParser):
    """Tables of the page by id: rows of cell texts; and every src/href, and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[str] = []
        self.tags: set[str] = set()
        self.ids: list[str] = []
        self.text: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        self.links += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag == "table":
            self._table = attrs.get("id", "")
            self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag == "td" and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _page(out: Path) -> _Cells:
    parser = _Cells()
    parser.feed((out / "dossier.html").read_text(encoding="utf-8"))
    return parser


# -- identity ---------------------------------------------------------------------------------------
def test_a_partial_copy_names_every_missing_file(release, built):
    dossier, out, _ = built
    present = set(_files(release))
    expected_missing = sorted(e.path for e in load_manifest() if e.path not in present)
    assert 0 < len(expected_missing) < len(load_manifest())  # ../shared/release is a partial copy
    identity = dossier["identity"]
    assert identity["ok"] is False and identity["tree_matches"] is False and identity["tree_id"] != RELEASE_TREE
    assert sorted(d["path"] for d in identity["differences"] if d["status"] == "missing") == expected_missing
    assert identity["counts"]["missing"] == len(expected_missing) and identity["counts"]["modified"] == 0
    page = _page(out)
    rows = page.tables["differences"]
    assert sorted(r[0] for r in rows[1:] if r[1] == "missing") == expected_missing
    assert f"{len(expected_missing)} missing" in identity["summary"]


def test_a_copy_with_one_byte_changed_names_that_file(changed):
    dossier, out, copy = changed
    identity = dossier["identity"]
    modified = [d for d in identity["differences"] if d["status"] == "modified"]
    assert [d["path"] for d in modified] == [CHANGED] and modified[0]["reason"] == "sha256"
    manifest = {e.path: e for e in load_manifest()}
    assert modified[0]["expected_sha256"] == manifest[CHANGED].sha256
    assert modified[0]["found_sha256"] == _sha256(copy / CHANGED) != manifest[CHANGED].sha256
    row = [r for r in _page(out).tables["differences"] if r and r[0] == CHANGED]
    assert len(row) == 1 and row[0][1] == "modified" and _sha256(copy / CHANGED) in row[0][3]
    assert "1 modified" in identity["summary"]
    # the changed byte breaks the paper's file: its diagram falls back on the project's rewrite, and says why
    paper = dossier["experiments"]["paper"]
    assert paper["drawn_from"].startswith("the project's own rewrite") and "cannot be read" in paper["drawn_from"]
    assert paper["parameters"] == 60_965_224  # the same network


# -- the replay, with and without --run ----------------------------------------------------------------
def test_the_quick_replay_is_recorded_with_its_evidence(built):
    dossier, out, _ = built
    replay = dossier["replay"]
    assert replay["mode"] == "demo" and replay["quick"] and replay["epochs"] == 1
    summary = json.loads((out / "replay" / "summary.json").read_text())
    assert replay["test"]["error"] == summary["test_error"] and replay["test"]["accuracy"] > 0.5
    # the learning curves come from the log: 6 training batches (epoch 1 and one more), one test
    assert [p[0] for p in replay["curves"]["train"]] == list(range(1, 7))
    assert len(replay["curves"]["test"]) == 1 and replay["curves"]["test"][0][0] == 5
    assert replay["curves"]["test"][0][2] == pytest.approx(summary["test_error"], abs=1e-6)
    assert replay["filters"] == {"layer": "conv1", "count": 32, "size": 5}
    report = json.loads((out / "replay" / "parity" / "report.json").read_text())
    assert replay["parity"]["verdict"] == report["verdict"] and replay["parity"]["passed"] is report["passed"]
    assert replay["parity"]["comparisons"] == len(report["metrics"]) and replay["parity"]["failures"] == 0
    # every input and output lies in DIR, with its SHA-256
    listed = replay["inputs"] + replay["outputs"]
    assert {x["path"] for x in replay["inputs"]} == {f"replay/data/{n}" for n in
                                                     ["batches.meta"] + [f"data_batch_{k}" for k in range(1, 7)]}
    assert any(x["path"].endswith("/1.5.npz") for x in replay["outputs"])
    for x in listed:
        assert x["sha256"] == _sha256(out / x["path"]) and x["bytes"] == (out / x["path"]).stat().st_size
    env = replay["environment"]
    assert env["packages"]["numpy"] and env["compiler"] and env["blas"].startswith("OpenBLAS")


def test_run_describes_an_existing_run_folder(built, changed):
    dossier, out, _ = changed
    replay = dossier["replay"]
    first = built[0]["replay"]
    assert replay["mode"] == "run" and replay["checkpoint"] == "1.5.npz"
    # the log and the parity report lay beside the run (the demo's layout): read, not rerun
    assert replay["curves"] == first["curves"] and replay["parity"]["verdict"] == first["parity"]["verdict"]
    assert replay["test"]["error"] == pytest.approx(first["test"]["error"])
    assert not (out / "replay").exists()  # nothing was run into the dossier
    for x in replay["inputs"] + replay["outputs"]:
        assert os.path.isabs(x["path"]) and x["sha256"] == _sha256(Path(x["path"]))
    assert "not recorded in its checkpoints" in replay["environment"]["note"]


# -- the page and the JSON say the same ----------------------------------------------------------------
def test_the_page_and_the_json_hold_the_same_facts(built):
    dossier, out, _ = built
    page = _page(out)
    text = " ".join("".join(page.text).split())
    identity = dossier["identity"]
    assert identity["summary"] in text and identity["tree_id"] in text and identity["swh_dir"] in text
    contents = dossier["contents"]
    assert contents["summary"] in text and all(m["item"] in text and m["why"] in text for m in contents["missing"])
    assert all(reason in text for reason in contents["cannot_run"]) and len(contents["cannot_run"]) >= 4
    files = page.tables["manifest-files"][1:]
    assert [(f["path"], f["status"]) for f in identity["files"]] == [tuple(r) for r in files]
    # every definition file's verdicts and parameter count, row by row
    rows = page.tables["definitions"][1:]
    builds = [(f, b) for f in dossier["experiments"]["files"] if f["kind"] == "layers" for b in f["builds"]]
    assert len(rows) == len(builds) == sum(len(f["builds"]) for f in dossier["experiments"]["files"]
                                           if f["kind"] == "layers")
    for row, (f, b) in zip(rows, builds):
        assert row[0] == f["path"] and row[2] == b["input"]
        assert row[4].startswith(f"{b['parameters']:,}" if b["parameters"] is not None else "-")
        assert row[6].startswith("yes" if b["runs_here"] else "no")
    params = [f for f in dossier["experiments"]["files"] if f["kind"] == "params"]
    assert [r[0] for r in page.tables["parameters"][1:]] == [f["path"] for f in params]
    assert len(page.tables["lineage"]) - 1 == len(dossier["experiments"]["lineage"]) > 0
    paper = page.tables["paper-results"][1:]
    for row, fact in zip(paper, dossier["experiments"]["paper"]["results"]):
        assert row[2] == f"{fact['recorded']['top1']:.4f}" and row[4] == f"{fact['paper']['top1']:.3f}"
    replay = dossier["replay"]
    assert f"accuracy {replay['test']['accuracy']:.2%}" in text and replay["parity"]["verdict"] in text
    for key in ("inputs", "outputs"):
        assert [(r[0], r[2]) for r in page.tables[key][1:]] == [(x["path"], x["sha256"]) for x in replay[key]]
    assert [r[1] for r in page.tables["commands"][1:]] == [c["command"] for c in dossier["commands"]]
    # the section headings, in order
    assert [i for i in page.ids if i in ("identity", "contents", "experiments", "replay", "check")] == [
        "identity", "contents", "experiments", "replay", "check"]
    assert json.loads((out / "dossier.json").read_text())["identity"] == identity


def test_the_page_is_self_contained(built):
    _, out, _ = built
    page = _page(out)
    assert page.links and all(link.startswith(("#", "data:image/png;base64,")) for link in page.links)
    assert not page.tags & {"script", "link", "iframe", "object", "embed"}
    raw = (out / "dossier.html").read_text()
    assert "url(" not in raw and "@import" not in raw
    assert raw.count("<svg") == 3  # the architecture and two learning curves
    assert raw.count("data:image/png;base64,") == 3  # filters and the parity plots (forward, backward)


# -- the crate ---------------------------------------------------------------------------------------------
def test_the_crate_reads_back_and_names_every_file(built):
    dossier, out, _ = built
    crate = rocrate.ROCrate(out)
    on_disk = {rel: p for rel, p in _files(out).items() if rel != "ro-crate-metadata.json"}
    entities = {e.id: e for e in crate.data_entities}
    assert set(entities) == set(on_disk)
    for rel, path in on_disk.items():
        assert entities[rel]["sha256"] == _sha256(path), rel
        assert entities[rel]["contentSize"] == str(path.stat().st_size)
    assert "https://w3id.org/ro/wfrun/process/0.5" in {c.id for c in crate.root_dataset["conformsTo"]}
    replay = crate.dereference("#replay")
    assert replay.type == "CreateAction" and replay["instrument"].id == "#software/alexnet-replay"
    assert {o.id for o in replay["object"]} == {x["path"] for x in dossier["replay"]["inputs"]}
    assert {o.id for o in replay["result"]} == {x["path"] for x in dossier["replay"]["outputs"]}
    copy = crate.dereference("#copy")
    manifest = load_manifest()
    assert len(copy["hasPart"]) == len(manifest)
    part = crate.dereference(f"#copy/{manifest[0].path}")
    assert part["sha256"] == manifest[0].sha256
    # SHA256SUMS: every file but itself and the crate's metadata
    sums = dict(reversed(line.split("  ", 1)) for line in (out / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == set(on_disk) - {"SHA256SUMS"}
    assert all(sums[rel] == _sha256(on_disk[rel]) for rel in sums)


# -- mistakes and failures ---------------------------------------------------------------------------------
def test_user_mistakes_are_one_clear_error(release, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReplayError, match="exists and is not a folder"):
        build_dossier(release, tmp_path / "file")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ReplayError, match="not empty and holds no earlier dossier"):
        build_dossier(release, tmp_path / "busy")
    with pytest.raises(ReplayError, match="no such folder"):
        build_dossier(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(ReplayError, match="no such run folder"):
        build_dossier(release, tmp_path / "out", run=tmp_path / "nope")
    assert main(["dossier", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "file"]


def test_a_failed_build_leaves_nothing_half_written(release, built, tmp_path, monkeypatch):
    _, first, _ = built
    out = tmp_path / "d"
    shutil.copytree(first, out)
    before = {rel: _sha256(p) for rel, p in _files(out).items()}

    def broken(*args, **kwargs):
        raise RuntimeError("the replay broke")

    monkeypatch.setattr(facts, "replay_demo", broken)
    with pytest.raises(RuntimeError, match="the replay broke"):
        build_dossier(release, out, quick=True)
    with pytest.raises(RuntimeError, match="the replay broke"):
        build_dossier(release, tmp_path / "new", quick=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no staging folder, no new DIR
    assert {rel: _sha256(p) for rel, p in _files(out).items()} == before  # the earlier dossier is intact


# -- a real browser ----------------------------------------------------------------------------------------
def _chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class DevTools:
    """Headless Chromium driven over ``--remote-debugging-pipe``: JSON messages, each ended by a NUL byte,
    written to the browser's fd 3 and read from its fd 4."""

    def __init__(self, exe: str, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def fds() -> None:  # in the child: its ends as fd 3 and 4, whatever numbers the pipes got
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-default-apps", "--hide-scrollbars", f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next = 0
        self.events: list[dict] = []

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no message from Chromium")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read(timeout)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def test_in_a_real_browser_no_console_error_no_network_request(built, not_running, tmp_path):
    exe = _chromium()
    if exe is None:
        why = "Chromium is not installed (apt-get install chromium; .ci/run installs it)"
        not_running["the dossier's browser test"] = why
        pytest.skip(why)
    _, out, _ = built
    url = (out / "dossier.html").resolve().as_uri()
    browser = DevTools(exe, Path(tempfile.mkdtemp(dir=tmp_path)))
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride", {"width": 1000, "height": 1300, "deviceScaleFactor": 1,
                                                            "mobile": False}, session=session)
        browser.send("Page.navigate", {"url": url}, session=session)
        browser.wait_for("Page.loadEventFired")
        ids = json.loads(browser.send("Runtime.evaluate", {
            "expression": "JSON.stringify([...document.querySelectorAll('h2')].map(h => h.id))",
            "returnByValue": True}, session=session)["result"]["value"])
        images = browser.send("Runtime.evaluate", {
            "expression": "[...document.images].every(i => i.complete && i.naturalWidth > 0)",
            "returnByValue": True}, session=session)["result"]["value"]
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        browser.send("Runtime.evaluate", {"expression": "document.getElementById('replay').scrollIntoView()"},
                     session=session)
        shot_replay = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        browser.send("Runtime.evaluate", {"expression": "document.getElementById('paper').scrollIntoView()"},
                     session=session)
        shot_paper = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        pdf = base64.b64decode(browser.send("Page.printToPDF", {}, session=session, timeout=60)["data"])
    finally:
        browser.close()
    assert ids == ["identity", "contents", "experiments", "replay", "check"] and images is True
    methods = [e.get("method") for e in browser.events]
    errors = [e for e in browser.events
              if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
    requests = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert "Page.loadEventFired" in methods and requests[:1] == [url]  # the listener saw the page itself
    assert [r for r in requests if r != url and not r.startswith("data:")] == []
    pages = len(re.findall(rb"/Type\s*/Page(?!s)", pdf))
    assert pdf[:5] == b"%PDF-" and pages >= 5  # it prints: a new page per section, long tables spill over
    for name, data in (("dossier-top.png", shot), ("dossier-paper.png", shot_paper),
                       ("dossier-replay.png", shot_replay)):
        png = base64.b64decode(data)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a rendered page, not a blank one
        (tmp_path / name).write_bytes(png)
        if os.environ.get("ALEXNET_DOSSIER_SCREENSHOTS"):  # how docs/dossier-*.png were made: 64 colours
            Image.open(io.BytesIO(png)).convert("RGB").quantize(64).save(
                Path(os.environ["ALEXNET_DOSSIER_SCREENSHOTS"], name), optimize=True)


def test_the_build_time_is_recorded(built):
    dossier, _, seconds = built
    assert 0 < dossier["build_seconds"] <= seconds + 0.005  # the page rounds it to hundredths
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", dossier["created"])
