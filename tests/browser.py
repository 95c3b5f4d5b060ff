"""Headless Chromium for the tests that look at a page as a person would: a screenshot that
must not be blank, and the page's text after it rendered.

Chromium is Debian's ``chromium`` package; ``.ci/run`` installs it, so under CI a missing
browser is a failure, elsewhere a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PNG = b"\x89PNG\r\n\x1a\n"
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium() -> str:
    """The browser's path; fails under CI and skips elsewhere when there is none."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium package")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    return browser


def screenshot(url: str, out: Path, *, size: str = "1400,1000", budget_ms: int = 20000) -> None:
    """A PNG of ``url`` as rendered at ``size``, checked to be a real page, not a blank one."""
    subprocess.run(
        [
            chromium(),
            *_FLAGS,
            "--hide-scrollbars",
            f"--window-size={size}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={out}",
            url,
        ],
        capture_output=True,
        timeout=180,
        check=False,
    )
    data = out.read_bytes()
    assert data[:8] == PNG and len(data) > 20_000, len(data)
    from PIL import Image

    colours = Image.open(out).convert("RGB").getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, "the page rendered more than a blank screen"


def rendered_text(url: str) -> str:
    """The page's DOM after it loaded (``--dump-dom``), tags and all."""
    proc = subprocess.run(
        [chromium(), *_FLAGS, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    return proc.stdout
