"""Downloads as data: URL + checksum, verified while streaming, resumable, renamed atomically."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from flexrec_bench.foundation.errors import DataError, FlexRecError


@dataclass(frozen=True)
class DownloadSpec:
    """One official archive. ``sha256`` is checked when known; ``md5`` only where the publisher
    gives nothing stronger (GroupLens publishes md5 sums). The sha256 of every file actually used
    is always recorded in the build manifest."""

    url: str
    filename: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    #: unpack a zip archive into the raw directory after download
    extract: bool = False


class DownloadError(FlexRecError):
    pass


def _hashers(spec: DownloadSpec) -> dict[str, "hashlib._Hash"]:
    return {"sha256": hashlib.sha256(), "md5": hashlib.md5(usedforsecurity=False)}


def fetch(spec: DownloadSpec, dest_dir: Path, *, timeout: float = 60.0, progress: bool = True) -> Path:
    """Fetch ``spec`` into ``dest_dir``; resume a partial ``.part`` file with an HTTP Range request.

    The final file appears only once complete and verified (``os.replace`` from ``.part``); a
    checksum mismatch deletes the partial file and raises. A complete file already present is
    verified again rather than trusted.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / spec.filename
    if dest.exists():
        _verify(spec, dest)
        if spec.extract and not _extracted_marker(dest).exists():  # a kill during extraction: unpack again
            extract_zip(dest, dest_dir)
        return dest
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(spec.url, headers={"User-Agent": "flexrec-bench"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # already complete
            resp = None
        else:
            raise DownloadError(f"{spec.url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        kept = f"; {offset} bytes kept in {part}, resumed on the next run" if offset else ""
        raise DownloadError(f"{spec.url}: cannot connect ({exc}){kept}") from None
    if resp is not None:
        with resp:
            if offset and resp.status != 206:  # server ignored Range: start over
                offset = 0
            total = resp.headers.get("Content-Length")
            total_bytes = int(total) + offset if total else spec.size
            mode = "ab" if offset else "wb"
            got = 0
            with open(part, mode) as f, tqdm(total=total_bytes, initial=offset, unit="B", unit_scale=True,
                                             desc=spec.filename, disable=not progress) as bar:
                try:
                    while chunk := resp.read(1 << 16):
                        f.write(chunk)
                        got += len(chunk)
                        bar.update(len(chunk))
                except (OSError, http.client.HTTPException) as exc:
                    raise DownloadError(f"{spec.url}: transfer broke off ({exc!r}); run again to resume "
                                        f"from {part}") from None
            if total is not None and got < int(total):
                raise DownloadError(f"{spec.url}: got {got} of {total} bytes; run again to resume from {part}")
    try:
        _verify(spec, part)
    except DataError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    if spec.extract:
        extract_zip(dest, dest_dir)
    return dest


def _verify(spec: DownloadSpec, path: Path) -> None:
    hashers = _hashers(spec)
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            size += len(block)
            for h in hashers.values():
                h.update(block)
    if spec.size is not None and size != spec.size:
        raise DataError(path, f"size {size} bytes, expected {spec.size} (from {spec.url})")
    if spec.sha256 and hashers["sha256"].hexdigest() != spec.sha256:
        raise DataError(path, f"sha256 {hashers['sha256'].hexdigest()} does not match the expected {spec.sha256}")
    if spec.md5 and hashers["md5"].hexdigest() != spec.md5:
        raise DataError(path, f"md5 {hashers['md5'].hexdigest()} does not match the expected {spec.md5}")


def _extracted_marker(archive: Path) -> Path:
    return archive.with_name(f".{archive.name}.extracted")


def extract_zip(archive: Path, dest_dir: Path) -> None:
    """Unpack into ``dest_dir``, refusing members that would escape it (zip-slip). Members are
    extracted into a fresh hidden folder and moved into place; a marker file written last says the
    extraction finished, so a run killed midway extracts again (download counts as done only then)."""
    import shutil

    root = dest_dir.resolve()
    marker = _extracted_marker(archive)
    marker.unlink(missing_ok=True)
    tmp = dest_dir / f".extract-{archive.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)  # a killed extraction's leftovers
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        for member in names:
            target = (dest_dir / member).resolve()
            if root not in target.parents and target != root:
                raise DataError(archive, f"archive member {member!r} would be written outside {dest_dir}")
        zf.extractall(tmp)
    for child in tmp.iterdir():
        final = dest_dir / child.name
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        os.replace(child, final)
    tmp.rmdir()
    marker.write_text("\n".join(names) + "\n", encoding="utf-8")
