"""The project's .dvcignore keeps DVC's own .gitignore files out of folder hashes: a folder dependency (such as
artifacts/data, which holds one in a git clone) hashes the same in a git clone as in a copy without git, so run-cache
entries and pushed results made in one are found in the other."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from pipeline_kit import GIT, dvc, run

# As artifacts/data: a stage writes data/made, and in a git repository DVC puts a .gitignore for it in data/, which
# a later stage reads whole.
DVC_YAML = """\
stages:
  made:
    cmd: python -c "open('data/made', 'w').write('made')"
    outs: [data/made]
  reads:
    cmd: python -c "open('count.txt', 'w').write(str(len(open('data/a.txt').read())))"
    deps: [data]
    outs: [count.txt]
"""


def _project(dest: Path, root: Path, git: bool, with_ignore: bool = True) -> Path:
    (dest / "data").mkdir(parents=True)
    (dest / "data" / "a.txt").write_text("abc")
    (dest / "dvc.yaml").write_text(DVC_YAML)
    if with_ignore:
        shutil.copy(root / ".dvcignore", dest / ".dvcignore")
    if git:
        run([*GIT, "init", "-q"], dest)
        dvc(dest, "init", "-q")
    else:
        dvc(dest, "init", "--no-scm", "-q")
    dvc(dest, "repro")
    return dest


def _dep_hashes(project: Path) -> dict[str, str]:
    stages = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    return {dep["path"]: dep["md5"] for dep in stages["reads"]["deps"]}


def test_folder_hashes_agree_between_a_git_clone_and_a_copy_without_git(tmp_path: Path, root: Path) -> None:
    in_git = _project(tmp_path / "git", root, git=True)
    assert (in_git / "data" / ".gitignore").read_text().strip() == "/made"  # DVC wrote it, as in the workspace
    assert _dep_hashes(in_git) == _dep_hashes(_project(tmp_path / "plain", root, git=False))
    # Without the project's .dvcignore the same folders hash differently: the rule is what makes them agree.
    assert _dep_hashes(_project(tmp_path / "git-bare", root, git=True, with_ignore=False))["data"] != _dep_hashes(
        in_git)["data"]
