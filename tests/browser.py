"""Headless Chromium for UI tests: load a page of the Prefect UI, keep its screenshot, DOM and text.

Needs Debian chromium (`bash bin/setup-browser`). Shared by the synthetic-artifact UI test and the
deployment test (which renders the artifacts of a real recipe run).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1600,1200"]


def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("headless Chromium missing: run `bash bin/setup-browser` (Debian package chromium)")
    return path


def render(url: str, out: Path, tmp_path: Path, budget_ms: int = 15_000) -> tuple[Path, str, str]:
    """Load ``url`` in headless Chromium (its own fresh profile); returns the screenshot, the rendered
    DOM and its visible text. ``--virtual-time-budget`` lets the single-page app fetch from the API
    and render before the screenshot (virtual time: it takes ~2 s of real time, not 15)."""
    profile = tmp_path / f"chromium-profile-{out.stem}"
    proc = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                           f"--virtual-time-budget={budget_ms}", "--dump-dom", f"--screenshot={out}", url],
                          capture_output=True, text=True, timeout=80)
    shutil.rmtree(profile, ignore_errors=True)
    assert out.exists(), f"no screenshot of {url} (rc {proc.returncode}): {proc.stderr[-2000:]}"
    dom = proc.stdout
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())
    out.with_suffix(".txt").write_text(text)
    return out, dom, text


def distinct_colours(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as img:
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    return len(colours or [])


def assert_not_blank(png: Path) -> None:
    size, colours = png.stat().st_size, distinct_colours(png)
    print(f"{png}: {size:,} bytes, {colours} colours")
    assert size > 30_000 and colours > 200, f"{png} looks blank: {size} bytes, {colours} colours"
