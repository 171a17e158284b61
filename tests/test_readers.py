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
