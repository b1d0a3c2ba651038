"""The README's screenshots of the portal, taken by its browser tests against a whole local
platform: the study list, the share dialog and the Access tab (`tests/portal/test_axe_browser.py`)
and the image viewer (`tests/portal/test_viewer_browser.py`).

    uv run python scripts/readme_screenshots.py                # run the two tests, then copy
    uv run python scripts/readme_screenshots.py --from DIR     # copy from an earlier run's
                                                               # $PORTAL_SCREENSHOTS

Each is cut to 1280x800 (the top of the page) and written as an optimised 256-colour PNG into
`docs/screenshots/`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
SIZE = (1280, 800)
TESTS = ("tests/portal/test_axe_browser.py", "tests/portal/test_viewer_browser.py")
#: README name: the screenshot the tests save (`{who}-{nn}-{step}.png`)
WANTED = {
    "study-list.png": "13-axe-*-study-list-shared.png",
    "share-dialog.png": "13-axe-*-share-dialog.png",
    "viewer.png": "8-viewer-*-viewer.png",
    "access-tab.png": "13-axe-*-access-tab.png",
}


def take(into: Path) -> None:
    env = {**os.environ, "PORTAL_SCREENSHOTS": str(into)}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *TESTS]
    subprocess.run(command, cwd=ROOT, env=env, check=True)  # noqa: S603 - fixed argv


def optimised(source: Path, target: Path) -> None:
    image = Image.open(source).convert("RGB")
    if image.width != SIZE[0]:
        image = image.resize((SIZE[0], round(image.height * SIZE[0] / image.width)))
    image = image.crop((0, 0, SIZE[0], min(SIZE[1], image.height)))
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        target, optimize=True
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", type=Path, help="an earlier run's screenshots")
    args = parser.parse_args(argv)
    source = args.source
    if source is None:
        source = Path(tempfile.mkdtemp(prefix="readme-screenshots-"))
        take(source)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, pattern in WANTED.items():
        found = sorted(source.glob(pattern))
        if not found:
            print(f"readme_screenshots: no {pattern} in {source}", file=sys.stderr)
            return 1
        optimised(found[-1], OUT / name)
        print(f"{OUT / name}: {(OUT / name).stat().st_size // 1024} KiB from {found[-1].name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
