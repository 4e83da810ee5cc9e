from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flexrec_bench.datasets.download import DownloadError, DownloadSpec, fetch
from flexrec_bench.foundation.errors import DataError

PAYLOAD = bytes(range(256)) * 4000


class _Files(BaseHTTPRequestHandler):
    files: dict = {}
    cut_after: int | None = None
    ranges: list = []

    def do_GET(self):
        data = self.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.end_headers()
            return
        start = 0
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).cut_after is not None:
            self.wfile.write(body[: type(self).cut_after])
            type(self).cut_after = None
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    _Files.files, _Files.cut_after, _Files.ranges = {}, None, []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_fetch_verifies_sha256(server, tmp_path):
    _Files.files["/a.bin"] = PAYLOAD
    spec = DownloadSpec(f"{server}/a.bin", "a.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest())
    path = fetch(spec, tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert fetch(spec, tmp_path, progress=False) == path  # present: verified again, not re-fetched
    assert len(_Files.ranges) == 1


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    _Files.files["/a.bin"] = PAYLOAD
    spec = DownloadSpec(f"{server}/a.bin", "a.bin", sha256="0" * 64)
    with pytest.raises(DataError, match="sha256 .* does not match"):
        fetch(spec, tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_resumes_with_range(server, tmp_path):
    _Files.files["/a.bin"] = PAYLOAD
    _Files.cut_after = 100_000
    spec = DownloadSpec(f"{server}/a.bin", "a.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest())
    with pytest.raises(DownloadError, match="run again to resume"):
        fetch(spec, tmp_path, progress=False)
    assert not (tmp_path / "a.bin").exists() and (tmp_path / "a.bin.part").stat().st_size == 100_000
    fetch(spec, tmp_path, progress=False)
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert _Files.ranges[-1] == "bytes=100000-"


def test_zip_is_extracted_and_zip_slip_refused(server, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml-1m/ratings.dat", "1::1::5::1\n")
    _Files.files["/ok.zip"] = buf.getvalue()
    spec = DownloadSpec(f"{server}/ok.zip", "ok.zip", md5=hashlib.md5(buf.getvalue()).hexdigest(), extract=True)
    fetch(spec, tmp_path, progress=False)
    assert (tmp_path / "ml-1m" / "ratings.dat").read_text() == "1::1::5::1\n"
    bad = io.BytesIO()
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("../evil.txt", "x")
    _Files.files["/bad.zip"] = bad.getvalue()
    with pytest.raises(DataError, match="outside"):
        fetch(DownloadSpec(f"{server}/bad.zip", "bad.zip", sha256=hashlib.sha256(bad.getvalue()).hexdigest(),
                           extract=True), tmp_path / "x", progress=False)
    assert not (tmp_path / "evil.txt").exists()


def test_download_command_fetches_every_file_of_a_dataset(server, tmp_path):
    from typer.testing import CliRunner

    from flexrec_bench.cli import app
    from flexrec_bench.datasets import DATASETS, DatasetSpec
    from flexrec_bench.datasets.movielens import read_ml1m

    _Files.files["/a.bin"] = PAYLOAD
    spec = DatasetSpec(name="remote-test", description="test", reader=read_ml1m, signal_kind="rating",
                       signal_scale=5, default_needs=("interest",),
                       downloads=(DownloadSpec(f"{server}/a.bin", "a.bin"),))
    DATASETS.register("remote-test", spec)
    try:
        r = CliRunner().invoke(app, ["download", "--dataset", "remote-test", "--raw-dir", str(tmp_path)])
    finally:
        DATASETS._objs.pop("remote-test")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD
    assert hashlib.sha256(PAYLOAD).hexdigest() in r.output and "no published sha256" in r.output
    r = CliRunner().invoke(app, ["download", "--dataset", "kuairec", "--raw-dir", str(tmp_path)])
    assert r.exit_code != 0 and "kuairec.com" in str(r.exception)


def test_download_embeddings_fetches_the_pinned_artifact_verified(server, tmp_path, monkeypatch):
    """`download --embeddings D --from URL` fetches a published artifact into $FLEXREC_HOME, checked
    against the sha256 and size the dataset spec names; a tampered copy is refused and left nowhere;
    a build then uses the fetched copy, and refuses one that was edited afterwards."""
    from typer.testing import CliRunner

    from flexrec_bench.cli import app
    from flexrec_bench.datasets import DATASETS
    from flexrec_bench.datasets.pinned import BUNDLED_DIR, find, locate, pinned_dir

    monkeypatch.setenv("FLEXREC_HOME", str(tmp_path / "home"))
    art = find(DATASETS.get("ml-100k").embeddings, "sentence-transformers/all-MiniLM-L6-v2")  # an alias
    good = (BUNDLED_DIR / art.filename).read_bytes()
    runner = CliRunner()
    r = runner.invoke(app, ["download", "--embeddings", "ml-100k"])
    assert r.exit_code == 0 and "bundled with flexrec-bench, nothing to download" in r.output
    _Files.files[f"/mirror/{art.filename}"] = good[:-1] + bytes([good[-1] ^ 1])  # one bit flipped
    r = runner.invoke(app, ["download", "--embeddings", "ml-100k", "--from", f"{server}/mirror"])
    assert r.exit_code != 0 and "sha256" in str(r.exception)
    assert not (pinned_dir() / art.filename).exists()
    _Files.files[f"/mirror/{art.filename}"] = good
    r = runner.invoke(app, ["download", "--embeddings", "ml-100k", "--from", f"{server}/mirror/"])
    assert r.exit_code == 0, r.output
    assert (pinned_dir() / art.filename).read_bytes() == good and locate(art) == pinned_dir() / art.filename
    r = runner.invoke(app, ["download", "--embeddings", "esci"])
    assert r.exit_code != 0 and "no pinned all-MiniLM-L6-v2 embeddings are published for esci" in str(r.exception)
    # an artifact edited after the download is never used
    from flexrec_bench.building.config import BuildConfig
    from flexrec_bench.building.build import build

    p = pinned_dir() / art.filename
    p.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(DataError, match="does not match the pinned all-MiniLM-L6-v2 embeddings"):
        build(BuildConfig(out=str(tmp_path / "out"), train_size=50, test_size=20), progress=False)
