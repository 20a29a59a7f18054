import http.server
import threading
from functools import partial

import pytest
import torch

from minigpt.data.batches import TokenData, get_batch
from minigpt.data.sources import open_source
from minigpt.errors import DataError


def documents(name: str) -> list[str]:
    """The source's documents, as preparing it reads them."""
    docs, current = [], ""
    for text, ends in open_source(name).pieces():
        current += text
        if ends:
            docs.append(current)
            current = ""
    return docs


def test_builtin_corpus_is_about_a_megabyte_of_prose(builtin_corpus):
    source = open_source()
    assert source.name == "builtin"
    [text] = documents("builtin")
    assert len(text.encode("utf-8")) > 1_000_000
    assert "statement" in text and text == builtin_corpus  # builtin_text(), parsed once


def test_reads_a_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("こんにちは世界\n", encoding="utf-8")
    assert documents(str(path)) == ["こんにちは世界\n"]


def test_reads_every_txt_in_a_folder_in_order(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "sub" / "c.txt").write_text("third")
    (tmp_path / "ignored.md").write_text("not text")
    assert documents(str(tmp_path)) == ["first", "second", "third"]


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.txt", "no such file or folder"),
    (lambda d: (d / "f").mkdir() or d / "f", "no .txt, .jsonl or .parquet files"),
])
def test_clear_errors(tmp_path, make, message):
    with pytest.raises(DataError, match=message):
        open_source(str(make(tmp_path)))


def test_invalid_utf8_says_where(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("line one\nline two caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not valid UTF-8: byte 0xe9 at offset 21 \(line 2\)"):
        documents(str(path))


def test_text_shorter_than_a_context_window_is_refused():
    with pytest.raises(DataError, match="too short.*needs 65"):
        TokenData.from_ids(list(range(100)), val_fraction=0.1, block_size=64)


def test_batches_are_windows_and_their_next_tokens():
    data = torch.arange(1000)
    g = torch.Generator().manual_seed(0)
    x, y = get_batch(data, 4, 16, g, torch.device("cpu"))
    assert x.shape == y.shape == (4, 16)
    assert torch.equal(y, x + 1)  # with data = 0, 1, 2, ... the next token is the value plus one


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests = 0

    def do_GET(self):
        CountingHandler.requests += 1
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def local_server(tmp_path):
    (tmp_path / "corpus.txt").write_text("served over http ✓\n" * 50, encoding="utf-8")
    handler = partial(CountingHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # shutdown() waits for the loop's next look at its flag: every 0.05 s, not 0.5
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_is_downloaded_once_into_the_cache(local_server, cache_dir):
    CountingHandler.requests = 0
    url = f"{local_server}/corpus.txt"
    first, second = documents(url), documents(url)
    assert first == second == ["served over http ✓\n" * 50]
    assert CountingHandler.requests == 1
    assert len(list((cache_dir / "downloads").iterdir())) == 1


def test_unreachable_url_is_a_clear_error(local_server, cache_dir):
    with pytest.raises(DataError, match="cannot download .*missing.txt"):
        open_source(f"{local_server}/missing.txt")
    assert not any((cache_dir / "downloads").iterdir())  # no half-written file left behind
