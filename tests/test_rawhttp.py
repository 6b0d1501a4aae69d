"""dsbench's own HTTP/1.1 streaming client (live/rawhttp.py): its framing, byte by byte, and the
same load through it and through httpx against `dsbench serve --sim`."""

import json

import pytest
from typer.testing import CliRunner

from dsbench.cli import app
from dsbench.live.rawhttp import Broken, _Body
from tests.servers import sim_server

runner = CliRunner()
CHUNKED = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n"


@pytest.mark.parametrize("cut", [1, 2, 3, 5, 7, len(CHUNKED)])
def test_chunked_bodies_decode_however_the_reads_split_them(cut):
    """Every split of the stream into reads of `cut` bytes gives the same body and ends once."""
    body = _Body({"transfer-encoding": "chunked"})
    out = b"".join(body.feed(CHUNKED[i : i + cut]) for i in range(0, len(CHUNKED), cut))
    assert out == b"hello, world" and body.done


def test_content_length_and_bad_framing():
    body = _Body({"content-length": "5"})
    assert body.feed(b"abc") == b"abc" and not body.done
    assert body.feed(b"defgh") == b"de" and body.done  # bytes past the length are not the body
    with pytest.raises(Broken, match="bad chunk size"):
        _Body({"transfer-encoding": "chunked"}).feed(b"zz\r\nab\r\n")


def test_raw_and_httpx_clients_record_the_same_requests(tmp_path):
    """The same closed-loop point through each client: every request completes with the server's
    token counts and per-chunk tokens that add up to them."""
    runs = {}
    with sim_server("--time-scale", "0.2") as (url, _):
        for client in ("raw", "httpx"):
            r = runner.invoke(
                app,
                [
                    "load", "--url", url, "--model", "dsbench-sim", "--workload", "math", "--concurrency", "4",
                    "--requests", "16", "--max-tokens", "24", "--warmup-s", "0", "--http-client", client,
                    "--out", str(tmp_path / client), "--quiet",
                ],
            )  # fmt: skip
            assert r.exit_code == 0, r.output
            runs[client] = [json.loads(x) for x in (tmp_path / client / "requests.jsonl").read_text().splitlines()]
    for client, recs in runs.items():
        assert len(recs) == 16 and all(r["error"] is None for r in recs), client
        assert all(sum(r["chunk_tokens"]) == r["output_tokens"] == 24 for r in recs), client
        assert all(r["chunk_lag_s"] and min(r["chunk_lag_s"]) >= 0 for r in recs), client
    assert json.loads((tmp_path / "raw" / "load.json").read_text())["config"]["http_client"] == "raw"


def test_raw_client_refuses_https(tmp_path):
    r = runner.invoke(
        app,
        ["load", "--url", "https://127.0.0.1:9", "--model", "m", "--workload", "math", "--concurrency", "1",
         "--requests", "1", "--http-client", "raw", "--out", str(tmp_path)],
    )  # fmt: skip
    assert r.exit_code == 2 and "plain http:// only" in r.output
