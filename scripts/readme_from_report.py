"""Copy sections of the pipeline's own report (reports/report.md) into README.md between marker comments.

The README's figures are then the last run's, never retyped: run this after `dvc repro`. A README block is
    <!-- report:SECTION TITLE -->
    ...replaced...
    <!-- /report -->
where SECTION TITLE is a heading of reports/report.md (without the #'s); the section runs to the next heading of the
same or a higher level.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

BLOCK = re.compile(r"(<!-- report:(?P<title>.+?) -->\n)(?P<body>.*?)(<!-- /report -->)", re.S)


def sections(report: str) -> dict[str, str]:
    """{heading title: its text up to the next heading of the same or higher level} of a Markdown document."""
    lines = report.splitlines()
    found: dict[str, str] = {}
    for i, line in enumerate(lines):
        match = re.match(r"(#+) (.*)", line)
        if not match:
            continue
        level, end = len(match.group(1)), len(lines)
        for j in range(i + 1, len(lines)):
            other = re.match(r"(#+) ", lines[j])
            if other and len(other.group(1)) <= level:
                end = j
                break
        found[match.group(2).strip()] = "\n".join(lines[i + 1 : end]).strip() + "\n"
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, default=Path("reports/report.md"))
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    args = parser.parse_args()
    if not args.report.exists():
        print(f"readme_from_report: {args.report} does not exist; run `dvc repro` first", file=sys.stderr)
        return 2
    found = sections(args.report.read_text())
    readme = args.readme.read_text()
    missing = [m.group("title") for m in BLOCK.finditer(readme) if m.group("title") not in found]
    if missing:
        print(f"readme_from_report: {args.report} has no section {', '.join(map(repr, missing))}", file=sys.stderr)
        return 2
    updated = BLOCK.sub(lambda m: m.group(1) + "\n" + found[m.group("title")] + "\n" + m.group(4), readme)
    tmp = args.readme.with_suffix(".md.tmp")
    tmp.write_text(updated)
    tmp.replace(args.readme)
    print(f"readme_from_report: {len(BLOCK.findall(readme))} blocks of {args.readme} regenerated from {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
