"""The report's folder (`replicate --out DIR`): written whole, and never over what the project
did not write.

DIR may be missing (it is created), an empty folder, or a report this module wrote earlier:
one whose manifest.json says so and which holds nothing but the files that manifest lists.
Anything else (a file, a folder with a user's notes, a report someone added files to, the
current folder or one holding it) is refused with one line before any training or MLflow run,
and again just before writing. A symbolic link to a folder stands for that folder. The new
report is written in a temporary folder beside DIR and swapped in with two renames, so a
failure (a full disk, a read-only folder: one line) leaves the earlier report (or nothing) in
place, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pipeline.core import files
from pipeline.core.errors import UserError
from pipeline.replication.report import figures, inputs, page, text

MANIFEST = "manifest.json"
WRITER = "python -m pipeline replicate"  # the manifest's `written_by`, what we recognise


def check_out_dir(out_dir: Path) -> Path:
    """Raise UserError unless `out_dir` is missing, an empty folder, or only a report of ours;
    return the folder to replace, absolute and with symbolic links followed: a link to a folder
    has the report written into the folder it names, and the link is left as it is."""
    blocked = files.not_a_folder(out_dir)
    if blocked:
        raise UserError(
            f"--out {out_dir} {blocked}; pass a new folder, or one that holds an earlier "
            "replicate report"
        )
    folder = Path(os.path.realpath(out_dir))
    here = Path.cwd()
    if folder == here or folder in here.parents:
        raise UserError(
            f"--out {out_dir} is the current folder or holds it, and the report replaces its "
            "folder whole; pass a folder inside it, such as --out report"
        )
    if not folder.exists():
        return folder  # created when the report is written
    foreign = sorted(entries(folder) - ours(folder))
    if foreign:
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise UserError(
            f"--out {out_dir} holds files that replicate did not write ({shown}); "
            "it replaces only a folder that holds nothing but an earlier report: "
            "move them, or pass a new folder"
        )
    return folder


def entries(folder: Path) -> set[str]:
    """Every file, link and folder under `folder`, as paths relative to it ('/'-separated)."""
    found = set()
    for root, dirs, names in os.walk(folder):
        for name in dirs + names:
            found.add((Path(root) / name).relative_to(folder).as_posix())
    return found


def ours(folder: Path) -> set[str]:
    """What our manifest in `folder` says we wrote there (with the folders holding it and the
    manifest itself); empty when there is no manifest of ours."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"] if manifest.get("written_by") == WRITER else []
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return set()
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return set()
    folders = {parent.as_posix() for f in files for parent in Path(f).parents} - {"."}
    return {*files, *folders, MANIFEST}


def write_report(report: inputs.ReportInput, out_dir: Path) -> Path:
    """report.md, report.html (self-contained), figures/*.png, results.json and the manifest
    naming them, swapped in for the folder `out_dir`; returns the path of report.md. A write
    that fails (a full disk, a read-only folder) is one line, and leaves the earlier report
    and no temporary folder."""
    folder = check_out_dir(out_dir)
    try:
        with files.new_folders(folder.parent):
            tmp = files.new_folder(folder.parent, f".{folder.name}-new-")
            try:
                render_into(report, tmp)
                check_out_dir(out_dir)  # again: a user may have added a file while we trained
                replace(folder, tmp)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)  # only left when something failed
    except OSError as e:
        raise UserError(f"--out {out_dir}: cannot write the report: {files.advice(e)}") from None
    return out_dir / "report.md"


def render_into(report: inputs.ReportInput, folder: Path) -> None:
    """Every file of the report into the empty `folder`, the manifest last."""
    images = {name: figures.png(fig) for name, fig in figures.figures(report).items()}
    markdown = text.markdown(report)
    files = {
        "report.md": markdown.encode(),
        "report.html": page.to_html(markdown, images).encode(),
        "results.json": json.dumps(inputs.to_json(report)).encode(),
        **{f"{page.FIGURE_PREFIX}{name}": content for name, content in images.items()},
    }
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    (folder / MANIFEST).write_text(
        json.dumps({"written_by": WRITER, "files": sorted(files)}, indent=1)
    )


def replace(out_dir: Path, new: Path) -> None:
    """Put the folder `new` where the folder `out_dir` is; the old one (checked to be ours) is
    deleted."""
    if not out_dir.exists():
        new.rename(out_dir)
        return
    old = files.new_folder(out_dir.parent, f".{out_dir.name}-old-")
    old.rmdir()  # a free name beside out_dir, for the rename
    out_dir.rename(old)
    try:
        new.rename(out_dir)
    except BaseException:
        old.rename(out_dir)  # the earlier report back in place
        raise
    shutil.rmtree(old, ignore_errors=True)  # the new report is in place whatever is left here
