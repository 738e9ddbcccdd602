"""Headless Chromium for the HTML view's tests: a screenshot and the DOM after the page's scripts ran.

Debian's `chromium` (the Makefile's DEB_PACKAGES; `make install` installs it). As root it needs `--no-sandbox`.
Each run gets its own process group and profile directory, and the group is killed when the run ends (on a
timeout too), so no renderer or crashpad process outlives the test.
"""

from __future__ import annotations

import contextlib
import html.parser
import os
import shutil
import signal
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

WINDOW = (1280, 900)
RUN_TIMEOUT = 60.0
MISSING = ("chromium is not installed: `make install` installs it (Debian package chromium, in the Makefile's "
           "DEB_PACKAGES)")


def chromium_binary() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(MISSING, pytrace=False)
    return found


def chromium_argv(binary: str, profile: Path, *action: str) -> list[str]:
    return [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
            f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", *action]


def run_chromium(profile: Path, *action: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium once; kill its whole process group when it ends or times out."""
    argv = chromium_argv(chromium_binary(), profile, *action)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            stdin=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, err = proc.communicate()
        pytest.fail(f"chromium did not finish within {timeout:g} s: {argv}\n{err[-2000:]}")
    finally:
        _kill_group(proc.pid)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def screenshot(page: Path, out: Path, profile: Path) -> Path:
    done = run_chromium(profile, f"--screenshot={out}", page.resolve().as_uri() if "://" not in str(page) else
                        str(page))
    assert done.returncode == 0 and out.is_file(), f"chromium failed ({done.returncode}):\n{done.stderr[-2000:]}"
    return out


def dump_dom(url: str, profile: Path) -> str:
    done = run_chromium(profile, "--dump-dom", url)
    assert done.returncode == 0 and "<html" in done.stdout, f"chromium failed ({done.returncode}):\n" \
                                                           f"{done.stderr[-2000:]}"
    return done.stdout


@dataclass(frozen=True)
class Tag:
    name: str
    attrs: dict[str, str | None]


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[Tag] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(Tag(tag, dict(attrs)))


def tags(dom: str) -> list[Tag]:
    """Every start tag of a dumped DOM, in document order."""
    parser = _Tags()
    parser.feed(dom)
    return parser.tags


def primary_dcs(dom: str) -> list[str]:
    """The `data-dc` of every DC box marked `data-role="primary"`."""
    return [str(t.attrs.get("data-dc")) for t in tags(dom) if t.attrs.get("data-role") == "primary"]


# ---- PNG, without PIL: chunks, zlib, and the scanline filters of the PNG specification
@dataclass(frozen=True)
class Png:
    width: int
    height: int
    pixels: list[bytes]  # one row of raw pixel bytes per scanline, filters undone
    channels: int

    def sample(self, step: int = 37) -> set[bytes]:
        """The distinct colours of a grid of pixels every `step` pixels."""
        seen = set()
        for y in range(0, self.height, step):
            row = self.pixels[y]
            for x in range(0, self.width, step):
                seen.add(row[x * self.channels:(x + 1) * self.channels])
        return seen


def read_png(data: bytes) -> Png:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    assert header is not None, "no IHDR chunk"
    width, height, depth, colour, _compression, _filter, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    assert depth == 8 and channels is not None and interlace == 0, f"unexpected PNG format {header}"
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        _unfilter(kind, line, previous, channels)
        rows.append(bytes(line))
        previous = line
    return Png(width, height, rows, channels)


def _unfilter(kind: int, line: bytearray, above: bytearray, bpp: int) -> None:
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = above[i]
        corner = above[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            line[i] = (line[i] + predictor) & 0xFF
