"""README blocks are copied from the report's sections, so the README's figures are the last run's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "readme_from_report.py"

REPORT = """# Regime
| property | ours |
|---|---|
| zero-shot | 47.0 |
## Task identity, per task
digits 99.0
# Paper vs this benchmark
old text
"""


def _run(tmp_path: Path, readme: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "report.md").write_text(REPORT)
    (tmp_path / "README.md").write_text(readme)
    return subprocess.run([sys.executable, str(SCRIPT), "--report", str(tmp_path / "report.md"),
                           "--readme", str(tmp_path / "README.md")], capture_output=True, text=True)


def test_blocks_take_the_whole_section_with_its_subsections(tmp_path: Path) -> None:
    proc = _run(tmp_path, "intro\n<!-- report:Regime -->\nstale 17.3\n<!-- /report -->\nafter\n")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "README.md").read_text()
    assert "stale" not in text and "| zero-shot | 47.0 |" in text and "digits 99.0" in text
    assert "old text" not in text and text.startswith("intro\n") and text.endswith("after\n")


def test_a_block_naming_no_section_fails_and_leaves_the_readme(tmp_path: Path) -> None:
    readme = "<!-- report:No such heading -->\nkeep\n<!-- /report -->\n"
    proc = _run(tmp_path, readme)
    assert proc.returncode == 2 and "no section 'No such heading'" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "README.md").read_text() == readme
