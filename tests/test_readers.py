"""Every input format, and every kind of bad input, through the real readers."""

from __future__ import annotations

import json
from pathlib import Path

from rag.ingest.readers import Record, iter_files, read_file
from rag.news import Failure

MB = 1_000_000


def read(path: Path, max_bytes: int = 20 * MB) -> list[Record | Failure]:
    return list(read_file(path, max_bytes))


def only_record(path: Path) -> Record:
    items = read(path)
    assert len(items) == 1 and isinstance(items[0], Record), items
    return items[0]


def only_failure(path: Path) -> Failure:
    items = read(path)
    assert len(items) == 1 and isinstance(items[0], Failure), items
    return items[0]


def test_txt_with_front_matter(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("---\nid: x1\ntitle: \"Hello\"\nsource: Wire\n---\nBody text.\n", encoding="utf-8")
    rec = only_record(p)
    assert rec.fields == {"id": "x1", "title": "Hello", "source": "Wire", "text": "Body text.\n"}
    assert rec.single_file


def test_markdown_heading_is_title(tmp_path: Path) -> None:
    p = tmp_path / "a.md"
    p.write_text("# Big news\n\nFirst paragraph.\n", encoding="utf-8")
    rec = only_record(p)
    assert rec.fields["title"] == "Big news"
    assert rec.fields["text"].strip() == "First paragraph."


def test_html_main_text_and_metadata(tmp_path: Path) -> None:
    p = tmp_path / "page.html"
    body = " ".join(["Die Zentralbank hat am Donnerstag die Zinsen erneut angehoben."] * 6)
    p.write_text(f"""<html><head><title>Zinsen steigen | Beispielzeitung</title>
        <meta property="og:title" content="Zinsen steigen"><meta name="author" content="Anna Muster">
        <meta property="article:published_time" content="2023-03-16T10:00:00+01:00"></head>
        <body><nav>Home | Politik | Wirtschaft</nav><article><h1>Zinsen steigen</h1><p>{body}</p>
        <p>Ein zweiter Absatz mit weiteren Details zur Entscheidung der Notenbank.</p></article>
        <footer>Impressum Datenschutz Cookies</footer></body></html>""", encoding="utf-8")
    rec = only_record(p)
    assert "Zentralbank" in rec.fields["text"] and "Impressum" not in rec.fields["text"]
    assert rec.fields["title"] == "Zinsen steigen"
    assert rec.fields["published_at"].startswith("2023-03-16")


def test_html_without_article_text_fails(tmp_path: Path) -> None:
    p = tmp_path / "empty.html"
    p.write_text("<html><head><script>var x = 1;</script></head><body><img src=a.png></body></html>",
                 encoding="utf-8")
    assert "no article text" in only_failure(p).reason


def test_json_list_object_and_articles_key(tmp_path: Path) -> None:
    for name, data, n in (("list.json", [{"text": "a"}, {"text": "b"}], 2),
                          ("one.json", {"text": "a", "title": "T"}, 1),
                          ("wrapped.json", {"articles": [{"text": "a"}, {"text": "b"}, {"text": "c"}]}, 3)):
        p = tmp_path / name
        p.write_text(json.dumps(data), encoding="utf-8")
        items = read(p)
        assert len(items) == n and all(isinstance(i, Record) for i in items)


def test_json_malformed(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text('{"text": "a",\n "title": }', encoding="utf-8")
    f = only_failure(p)
    assert "malformed JSON at line 2" in f.reason and f.path == str(p)


def test_jsonl_malformed_line_is_reported_rest_read(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text('{"text": "one"}\n{"text": "two"\n\n[1, 2]\n{"text": "four"}\n', encoding="utf-8")
    items = read(p)
    records = [i for i in items if isinstance(i, Record)]
    failures = [i for i in items if isinstance(i, Failure)]
    assert [r.fields["text"] for r in records] == ["one", "four"]
    assert [f.path for f in failures] == [f"{p}:line 2", f"{p}:line 4"]
    assert "malformed JSON on line 2" in failures[0].reason
    assert "not a JSON object" in failures[1].reason


def test_csv_semicolon_and_comma_and_tsv(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id;title;text\n1;T1;Hello there\n2;T2;\"Quoted; with semicolon\"\n",
                                    encoding="utf-8")
    (tmp_path / "b.csv").write_text("Title,Body,Date\nT,\"Multi\nline body\",2023-01-02\n", encoding="utf-8")
    (tmp_path / "c.tsv").write_text("text\tsource\nTab separated\tWire\n", encoding="utf-8")
    a = read(tmp_path / "a.csv")
    assert [r.fields["text"] for r in a] == ["Hello there", "Quoted; with semicolon"]
    b = only_record(tmp_path / "b.csv")
    assert b.fields["Body"] == "Multi\nline body"
    c = only_record(tmp_path / "c.tsv")
    assert c.fields == {"text": "Tab separated", "source": "Wire"}


def test_csv_without_text_column(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("title,url\nA,http://x\n", encoding="utf-8")
    assert "no text column" in only_failure(p).reason


def test_csv_row_with_wrong_field_count(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("title,text\nA,good\nB,bad,extra,fields\nC,fine\n", encoding="utf-8")
    items = read(p)
    assert [i.fields["text"] for i in items if isinstance(i, Record)] == ["good", "fine"]
    (failure,) = [i for i in items if isinstance(i, Failure)]
    assert failure.path == f"{p}:line 3" and "4 fields" in failure.reason


def test_empty_whitespace_binary_nul(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_text("  \n\n \t\n", encoding="utf-8")
    (tmp_path / "bin.txt").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "nul.txt").write_bytes(b"text with a \x00 NUL byte")
    assert only_failure(tmp_path / "empty.txt").reason == "empty file"
    assert "only whitespace" in only_failure(tmp_path / "blank.txt").reason
    assert "binary" in only_failure(tmp_path / "bin.txt").reason
    assert "binary" in only_failure(tmp_path / "nul.txt").reason


def test_encodings(tmp_path: Path) -> None:
    (tmp_path / "bom.txt").write_bytes("\ufeffÜber die Brücke".encode("utf-8"))
    (tmp_path / "cp1252.txt").write_bytes("Über die Brücke – “Zitat”".encode("cp1252"))
    (tmp_path / "utf16.txt").write_bytes("Über die Brücke".encode("utf-16"))
    (tmp_path / "bad.txt").write_bytes(b"abc \x81\x8d\x8f\x90\x9d \xc3(")
    assert only_record(tmp_path / "bom.txt").fields["text"] == "Über die Brücke"
    rec = only_record(tmp_path / "cp1252.txt")
    assert rec.fields["text"] == "Über die Brücke – “Zitat”" and "Windows-1252" in rec.notes[0]
    assert only_record(tmp_path / "utf16.txt").fields["text"] == "Über die Brücke"
    assert "undecodable" in only_failure(tmp_path / "bad.txt").reason


def test_too_large_single_file_but_exports_stream(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("word " * 300_000, encoding="utf-8")  # 1.5 MB
    (f,) = read(big, max_bytes=MB)
    assert isinstance(f, Failure) and "too large" in f.reason and "1.5 MB" in f.reason
    export = tmp_path / "big.jsonl"
    export.write_text("\n".join(json.dumps({"text": "word " * 1000}) for _ in range(400)), encoding="utf-8")
    assert export.stat().st_size > MB
    items = read(export, max_bytes=MB)
    assert len(items) == 400 and all(isinstance(i, Record) for i in items)


def test_unsupported_and_missing(tmp_path: Path) -> None:
    p = tmp_path / "x.pdf"
    p.write_bytes(b"%PDF-1.4")
    assert "unsupported file type .pdf" in only_failure(p).reason
    items = list(iter_files([tmp_path / "nope"]))
    assert isinstance(items[0], Failure) and "no such file" in items[0].reason


def test_folder_walk_is_recursive_sorted_and_skips(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("z")
    (tmp_path / "a.md").write_text("a")
    (tmp_path / ".hidden.txt").write_text("h")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "c.txt").write_text("c")
    (tmp_path / "img.png").write_bytes(b"\x89PNG")
    items = list(iter_files([tmp_path]))
    paths = [str(i) for i in items if isinstance(i, Path)]
    assert paths == [str(tmp_path / "a.md"), str(tmp_path / "b" / "z.txt")]
    assert ("skipped", str(tmp_path / "img.png")) in items


# ---- hostile inputs, reader level (end-to-end ones: tests/test_hostile_inputs.py) ----

def test_json_nan_and_infinity_fail_their_own_record(tmp_path: Path) -> None:
    p = tmp_path / "list.json"
    p.write_text('[{"text": "a"}, {"text": "b", "title": NaN}, {"text": "c", "x": [-Infinity]}, {"text": "d"}]',
                 encoding="utf-8")
    items = read(p)
    assert [i.fields["text"] for i in items if isinstance(i, Record)] == ["a", "d"]
    failures = [i for i in items if isinstance(i, Failure)]
    assert [f.path for f in failures] == [f"{p}:item 2", f"{p}:item 3"]
    assert "NaN is not a valid JSON number" in failures[0].reason
    assert "-Infinity is not a valid JSON number" in failures[1].reason
    q = tmp_path / "x.jsonl"
    q.write_text('{"text": "one"}\n{"text": "two", "n": Infinity}\n{"text": "three", "n": 1e999}\n{"text": "four"}\n',
                 encoding="utf-8")
    items = read(q)
    assert [i.fields["text"] for i in items if isinstance(i, Record)] == ["one", "four"]
    failures = [i for i in items if isinstance(i, Failure)]
    assert [f.path for f in failures] == [f"{q}:line 2", f"{q}:line 3"]
    assert "Infinity is not a valid JSON number" in failures[0].reason and "out of range" in failures[1].reason


def test_json_absurd_nesting_and_huge_integer_are_failures(tmp_path: Path) -> None:
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    f = only_failure(nested)
    assert f.path == str(nested) and "nested too deeply" in f.reason
    big = tmp_path / "big.jsonl"
    big.write_text('{"text": "ok"}\n{"text": "x", "id": ' + "7" * 5000 + '}\n' + "[" * 50_000 + "\n",
                   encoding="utf-8")
    items = read(big)
    assert isinstance(items[0], Record)
    assert (items[1].path, items[2].path) == (f"{big}:line 2", f"{big}:line 3")
    assert "integer of 5000 digits" in items[1].reason and "nested too deeply" in items[2].reason


def test_unexpected_error_in_one_file_is_a_failure(tmp_path: Path, monkeypatch, caplog) -> None:
    import logging

    import pytest

    from rag.ingest import readers

    p = tmp_path / "a.txt"
    p.write_text("Body.", encoding="utf-8")

    def boom(*args: object, **kwargs: object) -> Record:
        raise LookupError("surprise")
    monkeypatch.setattr(readers, "_read_plain", boom)
    with caplog.at_level(logging.DEBUG, logger="rag.ingest.readers"):
        f = only_failure(p)
    assert f.path == str(p) and f.reason == "unexpected error: LookupError: surprise"
    assert any(r.exc_info and "surprise" in str(r.exc_info[1]) for r in caplog.records)  # traceback kept
    for fatal in (KeyboardInterrupt, MemoryError):
        def raise_fatal(*args: object, exc: type[BaseException] = fatal, **kwargs: object) -> Record:
            raise exc()
        monkeypatch.setattr(readers, "_read_plain", raise_fatal)
        with pytest.raises(fatal):
            read(p)


#: Good lines filling the first 8 KB: a NUL byte there makes the whole file "binary".
GOOD_HEAD = b'{"text": "before"}\n' * 500


def test_stream_junk_is_skipped_in_bounded_pieces_as_one_failure(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    junk = b"\x00\x01\x02\xff\xfe junk\n" * 1000  # binary with newlines: many "lines", one report
    p.write_bytes(GOOD_HEAD + junk + b"\x00" * 5000 + b"\n" + b'{"text": "' + b"y" * 5000
                  + b'"}\n{"text": "after"}\n')
    items = read(p, max_bytes=2000)
    assert [i.fields["text"] for i in items if isinstance(i, Record)] == ["before"] * 500 + ["after"]
    failures = [i for i in items if isinstance(i, Failure)]
    assert len(failures) == 2, failures
    assert failures[0].path == f"{p}:line 501" and "binary data" in failures[0].reason
    assert failures[0].reason == "lines 501-1500 with binary data (NUL bytes); 11000 bytes skipped"
    assert failures[1].path == f"{p}:line 1501"  # the NUL run and the long line: over-long, one run
    assert failures[1].reason == "lines 1501-1502 too large (> 0.002 MB); 10014 bytes skipped"


def test_csv_streams_bounded_lines_and_keeps_quoted_newlines(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text('title,text\nA,"Multi\nline, quoted"\nB,' + "z" * 5000 + '\nD,fine\nC,"too big '
                 + ("q" * 1500 + "\n") * 3 + '"\n', encoding="utf-8")
    items = read(p, max_bytes=2000)
    records = [i for i in items if isinstance(i, Record)]
    assert [r.fields["text"] for r in records] == ["Multi\nline, quoted", "fine"]
    assert [r.origin for r in records] == [f"{p}:line 3", f"{p}:line 5"]  # a row ends on its line
    failures = [i for i in items if isinstance(i, Failure)]
    assert failures[0].path == f"{p}:line 4" and "line 4 too large" in failures[0].reason
    assert failures[1].path == f"{p}:line 6" and "row starting at line 6 too large" in failures[1].reason


def test_csv_with_nul_run_and_bad_bytes_mid_file(tmp_path: Path) -> None:
    p = tmp_path / "x.tsv"
    p.write_bytes(b"text\tsource\n" + b"ok\tWire\n" * 2000 + b"\x00" * 3000 + b"\nbad \xff byte\tX\nlast\tY\n")
    items = read(p)
    assert [i.fields["text"] for i in items if isinstance(i, Record)] == ["ok"] * 2000 + ["last"]
    reasons = {i.path: i.reason for i in items if isinstance(i, Failure)}
    assert "binary data" in reasons[f"{p}:line 2002"] and "undecodable as UTF-8" in reasons[f"{p}:line 2003"]


def test_too_many_bad_lines_are_counted_not_listed(tmp_path: Path) -> None:
    from rag.ingest.readers import MAX_FAILURES_PER_FILE

    p = tmp_path / "x.jsonl"
    p.write_text("nonsense\n" * (MAX_FAILURES_PER_FILE + 250) + '{"text": "good"}\n', encoding="utf-8")
    items = read(p)
    assert len(items) == MAX_FAILURES_PER_FILE + 2 and isinstance(items[-2], Record)
    assert items[-1].path == str(p) and "250 more bad lines" in items[-1].reason


def test_utf16_export_is_refused_cleanly(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_bytes('{"text": "a"}\n'.encode("utf-16"))
    assert "UTF-16 exports are not supported" in only_failure(p).reason


def test_fifo_and_unreadable_argument_are_failures(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    assert only_failure(fifo).reason == "not a regular file"  # never opened: that would block
    (item,) = iter_files([tmp_path / "missing" / "x.txt", b"/nonexistent\xff"][:1])
    assert isinstance(item, Failure) and item.reason == "no such file or folder"
    (item,) = iter_files([b"/nonexistent/\xff.txt"])  # bytes paths work; shown as valid text
    assert isinstance(item, Failure) and item.path == "/nonexistent/\ufffd.txt"
    (item,) = iter_files(["bad\x00name.txt"])
    assert isinstance(item, Failure) and "invalid path" in item.reason


def test_lone_surrogates_become_replacement_characters() -> None:
    from rag.ingest.articles import to_article
    from rag.ingest.clean import clean_field, clean_text

    assert clean_text("a\ud800b") == "a\ufffdb" and clean_field(["x\udce9", "y"]) == "x\ufffd, y"
    rec = Record({"text": "Body \ud800 text", "title": "T\udfff", "url": "http://x/\ud800"}, "p:line 1", "p", False)
    article, failure, _ = to_article(rec, ())
    assert failure is None and article is not None
    assert article.text == "Body \ufffd text" and article.title == "T\ufffd"
    for value in (article.text, article.title, article.url, article.id, article.origin):
        value.encode("utf-8")


def test_file_ids_come_from_name_bytes_and_stay_as_before(tmp_path: Path) -> None:
    import hashlib
    import os

    from rag.ingest.articles import to_article

    def article_id(path: Path) -> str:
        (rec,) = read(path)
        article, failure, _ = to_article(rec, ())
        assert failure is None
        return article.id

    plain = tmp_path / "Plain name ü.txt"
    plain.write_text("Some text.", encoding="utf-8")
    key = "file:" + str(plain.resolve())  # the id formula before names were keyed by bytes
    assert article_id(plain) == f"plain-name-u-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    e9, e8 = (Path(os.fsdecode(os.fsencode(tmp_path) + name)) for name in (b"/latin1_\xe9.txt", b"/latin1_\xe8.txt"))
    e9.write_text("Text one.", encoding="utf-8")
    e8.write_text("Text two.", encoding="utf-8")
    key9 = b"file:" + os.fsencode(e9.resolve())
    assert article_id(e9) == f"latin1-{hashlib.sha256(key9).hexdigest()[:10]}"
    assert article_id(e9) != article_id(e8)  # shown alike ("latin1_\ufffd.txt"), distinct files
    (rec,) = read(e9)
    assert rec.origin == str(tmp_path / "latin1_\ufffd.txt") and rec.path == str(e9)


def test_lone_cr_still_ends_a_line_in_exports(tmp_path: Path) -> None:
    (tmp_path / "mac.csv").write_bytes(b'title,text\rA,one\rB,"two\rlines"\rC,three\r')
    (tmp_path / "mac.jsonl").write_bytes(b'{"text": "a"}\r{"text": "b"}\r\n{oops\r{"text": "c"}')
    assert [r.fields["text"] for r in read(tmp_path / "mac.csv")] == ["one", "two\rlines", "three"]
    items = read(tmp_path / "mac.jsonl")
    assert [getattr(i, "origin", None) or i.path for i in items] == [f"{tmp_path / 'mac.jsonl'}:line {n}"
                                                                     for n in (1, 2, 3, 4)]
    assert isinstance(items[2], Failure) and [i.fields["text"] for i in items if isinstance(i, Record)] == list("abc")
