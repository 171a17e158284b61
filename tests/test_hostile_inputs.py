"""Hostile inputs, for real: files with those names and contents on disk, a real index,
real subprocesses where memory or another user is involved, and a fuzz run over the readers.

Contract under test: every reader yields ``Record`` or ``Failure(path, reason)``, nothing
raises for bad input, one broken file never stops the rest, and everything shown or
stored is valid UTF-8 text."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st

import rag
from rag.ingest.articles import to_article
from rag.ingest.readers import Record, display_path, iter_files, read_file
from rag.news import Failure

from conftest import ROOT

MB = 1_000_000
MAX_BYTES = 20 * MB  # the default RAG_MAX_FILE_MB


def at(folder: Path, name: bytes) -> Path:
    """A path in ``folder`` whose last part is ``name`` as raw bytes (need not be UTF-8)."""
    return Path(os.fsdecode(os.fsencode(folder) + b"/" + name))


def good_text(n: int) -> str:
    return f"Report {n}: the city council met on day {n} and approved budget item number {n} after a debate."


def failures_for(report: rag.IngestReport, path: Path) -> list[Failure]:
    shown = display_path(path)
    return [f for f in report.failed if f.path == shown or f.path.startswith(shown + ":")]


def assert_valid_text(*values: str | None) -> None:
    for value in values:
        if value is not None:
            value.encode("utf-8")  # raises on a lone surrogate


# ---- 1. one hostile JSON file must not abort the ingest ----

def test_nested_brackets_and_huge_integer_do_not_stop_the_ingest(index: rag.NewsIndex, tmp_path: Path) -> None:
    folder = tmp_path / "e"
    folder.mkdir()
    for n in range(10):
        (folder / f"good_{n}.txt").write_text(good_text(n), encoding="utf-8")
    nested = folder / "nested.json"
    nested.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")  # RecursionError in json
    digits = folder / "digits.jsonl"
    digits.write_text('{"text": "x", "count": ' + "9" * 5000 + "}\n", encoding="utf-8")  # int-digit limit
    report = index.ingest([folder])
    assert len(report.added) == 10 and report.counts()["failed"] == 2, report.failed
    (f_nested,) = failures_for(report, nested)
    (f_digits,) = failures_for(report, digits)
    assert f_nested.path == str(nested) and "nested too deeply" in f_nested.reason
    assert f_digits.path == f"{digits}:line 1" and "integer of 5000 digits" in f_digits.reason


# ---- 2. NaN / Infinity are not JSON numbers ----

def test_nan_and_infinity_fail_their_line_not_the_file(index: rag.NewsIndex, tmp_path: Path) -> None:
    p = tmp_path / "consts.jsonl"
    p.write_text("\n".join([
        json.dumps({"text": good_text(1), "title": "fine"}),
        '{"text": "' + good_text(2) + '", "title": NaN}',
        '{"text": "' + good_text(3) + '", "source": Infinity}',
        '{"text": "' + good_text(4) + '", "author": [-Infinity]}',
        json.dumps({"text": good_text(5)}),
    ]) + "\n", encoding="utf-8")
    report = index.ingest([p])
    assert len(report.added) == 2
    reasons = {f.path: f.reason for f in report.failed}
    assert reasons == {f"{p}:line 2": "line 2: NaN is not a valid JSON number",
                       f"{p}:line 3": "line 3: Infinity is not a valid JSON number",
                       f"{p}:line 4": "line 4: -Infinity is not a valid JSON number"}
    assert "nan" not in {(a.title or "").lower() for a in index.articles()}


# ---- 3. file names that are not UTF-8, lone surrogates in JSON strings ----

def test_non_utf8_names_and_lone_surrogates_are_ingested(index: rag.NewsIndex, tmp_path: Path) -> None:
    folder = tmp_path / "e"
    folder.mkdir()
    e9, e8 = at(folder, b"latin1_\xe9.txt"), at(folder, b"latin1_\xe8.txt")  # both shown as "latin1_\ufffd.txt"
    e9.write_text("Text of the first Latin-1 named report about harbour fees.", encoding="utf-8")
    e8.write_text("Text of the second Latin-1 named report about bridge tolls.", encoding="utf-8")
    lone = at(folder, b"lone_\xff\xfe.jsonl")
    lone.write_text('{"text": "Lone \\ud800 surrogate in a report on tram lines.", "title": "T \\udce9",'
                    ' "source": "S\\udfff"}\n', encoding="ascii")  # valid JSON, not valid UTF-8 once decoded
    broken = at(folder, b"broken_\xe9.json")
    broken.write_text("[" * 100_000, encoding="utf-8")
    report = index.ingest([folder])
    assert len(report.added) == 3, report
    (failure,) = report.failed
    assert failure.path == str(folder / "broken_\ufffd.json") and "nested too deeply" in failure.reason
    assert len(set(report.added)) == 3  # the two look-alike names are distinct files, distinct ids
    for summary in index.articles():
        assert_valid_text(summary.title, summary.source, summary.origin, summary.id)
        assert "\ufffd" in (summary.origin or "")
        article = index.article(summary.id)
        assert_valid_text(article.text, article.title, article.source)
    by_origin = {s.origin: s for s in index.articles()}
    tram = index.article(by_origin[f"{folder}/lone_\ufffd\ufffd.jsonl:line 1"].id)
    assert tram.text.startswith("Lone \ufffd surrogate") and tram.title == "T \ufffd" and tram.source == "S\ufffd"
    # The id comes from the name's bytes, so it is stable: the same files again change nothing.
    again = index.ingest([folder])
    assert sorted(again.unchanged) == sorted(report.added) and not again.added
    # A file given by its bytes path is the same file, with the same id.
    by_bytes = index.ingest([os.fsencode(e9)])
    assert len(by_bytes.unchanged) == 1 and by_bytes.unchanged[0] in report.added and by_bytes.ok


# ---- 4. memory must follow the record limit, not the longest line ----

# Peak RSS of the reading process. ru_maxrss survives execve, so a child of this pytest process
# (which holds the embedding model) would report pytest's own peak: the reader runs in a grandchild
# started by a small Python, whose ru_maxrss is its own. VmHWM (the peak of the process's current
# memory map, fresh at exec) is printed alongside as a cross-check.
RSS_SCRIPT = """
import json, resource, sys
from rag.ingest.readers import read_file
items = [[type(i).__name__, getattr(i, "origin", None) or i.path, getattr(i, "reason", "")]
         for i in read_file(sys.argv[1], int(sys.argv[2]))]
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "vmhwm_kb": int(hwm[0]),
                  "items": items}))
"""
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-c', *sys.argv[1:]]).returncode)"


def sparse_gigabyte_jsonl(path: Path) -> tuple[list[str], list[str]]:
    """An 8 KB header line, then ~1 GB of NUL bytes without a newline (a hole: no disk), then good lines."""
    with path.open("wb") as fh:
        fh.write(b'{"text": "' + b"h" * (8192 - 12) + b'"}')  # 8 KB, no newline: line 1 runs on into the hole
        fh.truncate(10**9)
    with path.open("ab") as fh:
        fh.write(b'\n{"text": "after one"}\n{"text": "after two"}\n')
    return ["line 1 too large (> 20 MB)"], [f"{path}:line 2", f"{path}:line 3"]


def sparse_gigabyte_csv(path: Path) -> tuple[list[str], list[str]]:
    """Good rows, then a ~1 GB NUL run mid-file, then a good row."""
    with path.open("wb") as fh:
        fh.write(b"title,text\n" + b"T,good row before the junk\n" * 400 + b"X,")
        fh.truncate(10**9)
    with path.open("ab") as fh:
        fh.write(b"\nZ,good row after the junk\n")
    return ["line 402 too large (> 20 MB)"], [f"{path}:line 2", f"{path}:line 403"]


def one_200mb_line(path: Path) -> tuple[list[str], list[str]]:
    with path.open("wb") as fh:
        fh.write(b'{"text": "before"}\n{"text": "')
        for _ in range(200):
            fh.write(b"y" * MB)
        fh.write(b'"}\n{"text": "after"}\n')
    return ["line 2 too large (> 20 MB)"], [f"{path}:line 1", f"{path}:line 3"]


@pytest.mark.parametrize("make", [sparse_gigabyte_jsonl, sparse_gigabyte_csv, one_200mb_line],
                         ids=["sparse-1GB-jsonl", "sparse-1GB-csv", "200MB-line-jsonl"])
def test_hostile_export_is_read_in_bounded_memory(make, tmp_path: Path) -> None:
    suffix = ".csv" if make is sparse_gigabyte_csv else ".jsonl"
    path = tmp_path / f"hostile{suffix}"
    reasons, good_origins = make(path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-c", LAUNCHER, RSS_SCRIPT, str(path), str(MAX_BYTES)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    peak, hwm = out["maxrss_kb"] * 1024, out["vmhwm_kb"] * 1024
    print(f"{make.__name__}: peak RSS {peak / MB:.0f} MB (VmHWM {hwm / MB:.0f} MB)")  # shown with pytest -s
    assert peak <= 200 * MB and hwm <= 200 * MB, f"peak RSS {peak / MB:.0f} MB, VmHWM {hwm / MB:.0f} MB"
    failures = [(o, r) for kind, o, r in out["items"] if kind == "Failure"]
    assert len(failures) == 1 and any(failures[0][1].startswith(r) for r in reasons), failures
    records = [o for kind, o, _ in out["items"] if kind == "Record"]
    assert good_origins[0] in records and good_origins[-1] == records[-1]  # good lines after the junk are read


# ---- 5. unreadable folders and paths, as an unprivileged user ----

# Run with -S: our site-packages are added by hand, so a system interpreter (below) sees ours, not its own.
SITE_PRELUDE = """
import os, site
for folder in os.environ["RAG_TEST_SITE"].split(os.pathsep):
    site.addsitedir(folder)
"""
PERM_SCRIPT = SITE_PRELUDE + """
import json, sys
from pathlib import Path
from rag.ingest.readers import iter_files, read_file
out = []
for item in iter_files(sys.argv[1:]):
    if isinstance(item, Path):
        out += [["failure", r.path, r.reason] if hasattr(r, "reason") else ["record", r.origin, ""]
                for r in read_file(item, 10**6)]
    elif isinstance(item, tuple):
        out.append(list(item) + [""])
    else:
        out.append(["failure", item.path, item.reason])
print(json.dumps({"uid": os.getuid(), "items": out}))
"""


NOBODY = {"user": 65534, "group": 65534, "extra_groups": []}


def python_for_nobody(env: dict[str, str]) -> str:
    """An interpreter uid 65534 can run and import rag with: ours, else a system one of the same
    version (ours may live where that user cannot go, e.g. a pyenv build under /root)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in dict.fromkeys([sys.executable, shutil.which(version), f"/usr/bin/{version}"]):
        if not candidate:
            continue
        try:
            probe = subprocess.run([candidate, "-S", "-c", SITE_PRELUDE + "import rag.ingest.readers"], cwd=ROOT,
                                   env=env, capture_output=True, timeout=120, **NOBODY)
        except OSError:
            continue
        if probe.returncode == 0:
            return candidate
    pytest.skip(f"no Python {sys.version_info[:2]} that uid 65534 may run")


def test_unreadable_folders_and_paths_are_reported_as_nobody() -> None:
    if os.geteuid() != 0:
        pytest.skip("switching to uid 65534 needs root")
    base = Path(tempfile.mkdtemp(prefix="rag-perm-"))  # not tmp_path: pytest's root is 0700
    try:
        base.chmod(0o755)
        top, closed, home = base / "top", base / "closed", base / "home"
        for folder, mode in ((top, 0o755), (top / "sub", 0o755), (top / "locked", 0o700), (closed, 0o700),
                             (home, 0o777)):
            folder.mkdir()
            folder.chmod(mode)
        for file, mode in ((top / "good.txt", 0o644), (top / "private.txt", 0o600), (top / "sub" / "ok.md", 0o644),
                           (top / "locked" / "hidden.txt", 0o644), (closed / "inner.txt", 0o644)):
            file.write_text(f"Readable text in {file.name}.", encoding="utf-8")
            file.chmod(mode)
        env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HF_HUB_OFFLINE": "1",
               "PYTHONDONTWRITEBYTECODE": "1", "RAG_TEST_SITE": os.pathsep.join(site.getsitepackages())}
        python = python_for_nobody(env)
        done = subprocess.run([python, "-S", "-c", PERM_SCRIPT, str(top), str(closed / "inner.txt"), str(closed)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, **NOBODY)
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out["uid"] == 65534
        assert out["items"] == [
            ["record", str(top / "good.txt"), ""],
            ["failure", str(top / "private.txt"), "permission denied"],
            ["failure", str(top / "locked"), "permission denied"],
            ["record", str(top / "sub" / "ok.md"), ""],
            ["failure", str(closed / "inner.txt"), "permission denied"],
            ["failure", str(closed), "permission denied"],
        ]
    finally:
        shutil.rmtree(base)


# ---- 6. fuzzing the readers, then a hostile folder through a real index ----

SUFFIXES = (".txt", ".md", ".html", ".json", ".jsonl", ".csv", ".tsv")
NASTY_NAMES = (b"latin1_\xe9", b"new\nline", b"tab\tand\rcr", b"\x1b[31mred\x07", b"\xff\xfe", b"\xed\xa0\x80",
               b"-rf", b" ", "ü".encode() * 60, b"L" * 240, b".hidden", b"a:line 3")
SURROGATES = ("\ud800", "\udce9", "\udfff")
FIELDS = ("text", "title", "id", "url", "source", "author", "published_at", "language", "x")

texts = st.text(st.one_of(st.characters(), st.sampled_from(SURROGATES)), max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | texts
    | st.integers(4000, 6000).map(lambda n: f"BIGINT{n}")
    | st.sampled_from(["2023-03-16T10:00:00+01:00", "16. März 2023", "0000-00-00", "9" * 400, "http://x/\ud800"]),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | texts,
                                                               kids, max_size=4),
    max_leaves=10)
nonfinite = st.sampled_from([math.nan, math.inf, -math.inf, "BIGINT5000"])
records = st.fixed_dictionaries({"text": texts, "n": nonfinite | json_values},
                                optional={name: json_values for name in FIELDS if name != "text"})


def to_json(value: object) -> str:
    """json.dumps, with BIGINT<n> markers turned into integers of n digits (json.dumps itself refuses them)."""
    out = json.dumps(value)  # ensure_ascii: lone surrogates become \\udXXX escapes; NaN stays NaN
    while '"BIGINT' in out:
        start = out.index('"BIGINT')
        end = out.index('"', start + 1)
        out = out[:start] + "8" * int(out[start + 7:end]) + out[end + 1:]
    return out


def encode(text: str, how: str) -> bytes:
    if how == "utf-16":
        return text.encode("utf-16", "surrogatepass")
    if how == "cp1252":
        return text.encode("cp1252", "replace")
    return text.encode("utf-8", "surrogatepass")  # lone surrogates become invalid UTF-8


@st.composite
def contents(draw: st.DrawFn, suffix: str) -> bytes:
    kind = draw(st.sampled_from(["bytes", "nested", "junk-after-head"] + ["structured"] * 3))
    if kind == "bytes":
        return draw(st.binary(max_size=3000))
    if kind == "nested":
        depth = draw(st.integers(1, 100_000))
        opener = draw(st.sampled_from(["[", '{"a":', '[{"text": "x", "y":', "<div>"]))
        closer = {"[": "]", '{"a":': "}", '[{"text": "x", "y":': "}]", "<div>": "</div>"}[opener]
        tail = closer * depth if draw(st.booleans()) else ""
        return (opener * depth + "1" + tail).encode()
    if kind == "junk-after-head":  # a good first 8 KB, then binary junk and NUL runs
        return b'{"text": "ok", "title": "t"}\n' * 300 + draw(st.binary(max_size=2000)) + b"\x00" * draw(
            st.integers(0, 50_000)) + b'\n{"text": "tail"}\n'
    values = draw(st.lists(records | json_values, max_size=5))
    how = draw(st.sampled_from(["utf-8", "utf-16", "cp1252"]))
    if suffix == ".json":
        return encode(to_json(values if draw(st.booleans()) else {"articles": values}), how)
    if suffix == ".jsonl":
        return encode("\n".join(to_json(v) for v in values), how)
    if suffix in (".csv", ".tsv"):
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter="\t" if suffix == ".tsv" else ",")
        writer.writerow(["title", "text"])
        writer.writerows([[str(v)[:200], str(v)] for v in values])
        return encode(buf.getvalue() + draw(texts), how)
    body = " ".join(str(v) for v in values) + draw(texts)
    if suffix == ".html":
        body = f"<html><head><title>{draw(texts)}</title></head><body><article><p>{body}</p></article></body></html>"
    elif draw(st.booleans()):
        body = f"---\ntitle: {draw(texts)}\nid: {draw(texts)}\n---\n# {draw(texts)}\n{body}"
    return encode(body, how)


@st.composite
def hostile_files(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    files = []
    for _ in range(draw(st.integers(1, 3))):
        suffix = draw(st.sampled_from(SUFFIXES))
        stem = draw(st.one_of(st.sampled_from(NASTY_NAMES), st.binary(min_size=1, max_size=100)))
        stem = stem.replace(b"/", b"_").replace(b"\x00", b"_")[:255 - len(suffix)]  # the OS limit: 255 bytes
        files.append((stem + suffix.encode(), draw(contents(suffix))))
    return files


def assert_no_nonfinite_numbers(value: object) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        assert not (isinstance(item, float) and not math.isfinite(item)), "NaN/Infinity got through"
        stack.extend(item.values() if isinstance(item, dict) else item if isinstance(item, list) else ())


def check_read(path: Path) -> Iterator[Record | Failure]:
    """read_file's results for one file, checked: nothing escapes, each result names the file,
    all text is valid UTF-8, and the safety net (an 'unexpected error') was not needed."""
    shown = display_path(path)
    for item in read_file(path, MAX_BYTES):
        where = item.path if isinstance(item, Failure) else item.origin
        assert where == shown or where.startswith(shown + ":"), (where, shown)
        assert_valid_text(where, getattr(item, "reason", None), *getattr(item, "notes", ()))
        if isinstance(item, Failure):
            assert not item.reason.startswith("unexpected error"), item
        else:
            assert_no_nonfinite_numbers(item.fields)
            article, failure, notes = to_article(item, ())  # () : no language model needed
            assert_valid_text(*notes, *(vars(failure).values() if failure else ()))
            if article is not None:
                assert_valid_text(*(v for v in vars(article).values() if isinstance(v, str)))
        yield item


@hyp_settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(hostile_files())
def test_fuzz_readers_never_raise_and_always_name_the_file(files: list[tuple[bytes, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        written = {}
        for name, data in files:
            at(folder, name).write_bytes(data)
            written[name] = data
        direct = [os.fsencode(at(folder, name)) for name in written] + [b"/nonexistent/\xff\n.txt"]
        seen = 0
        for item in iter_files([folder, *direct]):
            if isinstance(item, Path):
                assert os.fsencode(item).rsplit(b"/", 1)[-1] in written
                list(check_read(item))
                seen += 1
            elif isinstance(item, tuple):
                assert_valid_text(item[1])
            else:
                assert_valid_text(item.path, item.reason)
                assert item.path == "/nonexistent/\ufffd\n.txt", item
        visible = [n for n in written if not n.startswith(b".")]
        assert seen == len(visible) + len(written)  # once from the folder walk, once given directly


def test_hostile_folder_through_a_real_index(index: rag.NewsIndex, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = {  # name -> articles it holds
        b"good_1.txt": 1, b"good_2.md": 1, "caf\xe9".encode("latin-1") + b".txt": 1,
        b"new\nline \x1b name.txt": 1, b"export.csv": 2, b"export.jsonl": 2,
    }
    files: dict[bytes, bytes] = {
        b"good_1.txt": good_text(1).encode(),
        b"good_2.md": f"# Title two\n\n{good_text(2)}".encode(),
        "caf\xe9".encode("latin-1") + b".txt": good_text(3).encode("cp1252"),
        b"new\nline \x1b name.txt": good_text(4).encode(),
        b"export.csv": f"title,text\nA,{good_text(5)}\nB,{good_text(6)},extra\nC,{good_text(7)}\n".encode(),
        b"export.jsonl": (json.dumps({"text": good_text(8)}) + '\n{"text": "x", "t": NaN}\n'
                          + json.dumps({"text": good_text(9) + " \ud800"}) + "\n").encode(),
        b"nested.json": b"[" * 100_000 + b"]" * 100_000,
        b"nested_\xff.jsonl": b'{"a": ' * 60_000 + b"\n",
        b"digits.json": b'[{"text": "x", "n": ' + b"1" * 5000 + b"}]",
        b"nan.json": b"NaN",
        b"deep.html": b"<html><body>" + b"<div>" * 100_000 + b"text" + b"</div>" * 100_000 + b"</body></html>",
        b"binary.txt": bytes(range(256)) * 20,
        b"utf16.jsonl": '{"text": "a"}\n'.encode("utf-16"),
        b"junk.jsonl": b"\x00" * 50_000,
        b"columns.csv": b"headline;link\nA;http://x\n",
        b"\xed\xa0\x80.md": b"---\ntitle: \xff\n---\n",
    }
    for name, data in files.items():
        at(folder, name).write_bytes(data)
    report = index.ingest([folder])
    assert len(report.added) == sum(good.values()), (report.added, report.failed)
    for name in files:
        found = failures_for(report, at(folder, name))
        if name in good:
            assert not found or name in (b"export.csv", b"export.jsonl")  # these two: their bad rows only
        else:
            assert found, f"no failure reported for {name!r}"
    assert {f.path for f in failures_for(report, at(folder, b"export.csv"))} == {f"{folder}/export.csv:line 3"}
    assert {f.path for f in failures_for(report, at(folder, b"export.jsonl"))} == {f"{folder}/export.jsonl:line 2"}
    for failure in report.failed:
        assert_valid_text(failure.path, failure.reason)
        assert not failure.reason.startswith("unexpected error"), failure
    for summary in index.articles():
        assert_valid_text(summary.id, summary.title, summary.origin)
