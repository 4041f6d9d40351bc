"""What the benchmark scripts share: publishing a report (imported as `report`, from the scripts'
own folder)."""

from __future__ import annotations

from pathlib import Path


def publish(lines: list[str], out: Path | None) -> None:
    """Print the report's lines and, when `out` is given, write them there as one Markdown file."""
    text = "\n".join(lines).rstrip("\n") + "\n"
    print(text, end="")
    if out is not None:
        out.write_text(text)
