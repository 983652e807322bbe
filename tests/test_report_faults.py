"""The file system says no to `replicate` (issue 25): a --from-results file that is not a file,
not JSON or not a results.json, and an --out that is not a folder, a link, the current folder, a
full disk or a read-only folder. Each is one line, exit 2, and the earlier report (or nothing)
is left, with no temporary folder. The faults are made as tests/test_fs_faults.py makes them."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from pipeline.core import files
from pipeline.core.errors import UserError
from pipeline.replication.report import figures, inputs
from pipeline.replication.report.folder import MANIFEST, write_report
from tests.test_bad_input import assert_one_line_and_nothing_written, files_under
from tests.test_files import KINDS, NOT_FILES, NOT_FOLDERS, make_kind, release_fifos  # noqa: F401
from tests.test_fs_faults import FULL, FULL_IDS, ROOT_USER, one_line
from tests.test_report import CLAIMED, fake_runs, make_input

# --- replicate --from-results --------------------------------------------------------------


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads(json.dumps(inputs.to_json(make_input(fake_runs(CLAIMED, 0.002)))))


def run0(d: dict) -> dict:
    return d["runs"][0]


MALFORMED = [  # (id, change to a good results.json, part of the line)
    ("no-runs", lambda d: d.update(runs=[]), "runs: no run of sgd_0.02"),
    ("empty-history", lambda d: run0(d).update(history=[]), "runs[0].history: list should"),
    ("unknown-variant", lambda d: run0(d).update(variant="sgd_9"), "'sgd_9' is not a variant"),
    ("confusion-9-rows", lambda d: run0(d)["test_confusion_counts"].pop(), "at least 10 items"),
    ("confusion-11-rows", lambda d: run0(d)["test_confusion_counts"].append([0] * 10), "at most"),
    (
        "confusion-short-row",
        lambda d: run0(d)["test_confusion_counts"][3].pop(),
        "runs[0].test_confusion_counts[3]: list should have at least 10",
    ),
    (
        "confusion-negative",
        lambda d: run0(d)["test_confusion_counts"][3].__setitem__(2, -1),
        "runs[0].test_confusion_counts[3][2]: input should be greater than or equal to 0",
    ),
    ("confusion-text", lambda d: run0(d).update(test_confusion_counts="x"), "valid list"),
    ("seed-text", lambda d: run0(d).update(seed="1"), "runs[0].seed: input should be a valid int"),
    ("time-bool", lambda d: run0(d).update(train_time_s=True), "runs[0].train_time_s: input"),
    ("metric-missing", lambda d: run0(d)["history"][1].pop("val_acc"), "history[1].val_acc"),
    ("metric-text", lambda d: run0(d)["history"][0].update(val_acc="high"), "valid number"),
    ("history-not-a-list", lambda d: run0(d).update(history={}), "history: input should be"),
    ("runs-not-a-list", lambda d: d.update(runs={}), "runs: input should be a valid list"),
    ("run-not-an-object", lambda d: d["runs"].__setitem__(0, 3), "runs[0]: should be an object"),
    ("no-seeds-key", lambda d: d.pop("seeds"), "seeds: field required"),
    ("epochs-text", lambda d: d.update(epochs="3"), "epochs: input should be a valid integer"),
    ("table-not-a-number", lambda d: d["table_run_ids"].update(x="r"), "table_run_ids.x"),
    ("tuned-not-objects", lambda d: d.update(tuned=["a"]), "tuned[0]: should be an object"),
    ("frontier-trial", lambda d: d.update(frontier={"study_name": "f", "trials": [{}]}), "more"),
]


@pytest.mark.parametrize(
    "change, message", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_a_malformed_results_json_is_one_line(tmp_path, command, results, change, message):
    d = json.loads(json.dumps(results))
    change(d)
    (tmp_path / "r.json").write_text(json.dumps(d))
    before = files_under(tmp_path)
    out = command("replicate", "--from-results", "r.json", "--out", "report")
    assert_one_line_and_nothing_written(tmp_path, before, out, message)
    assert "not a replicate results.json" in out.stderr


NOT_JSON = [  # (id, the file's bytes, part of the line)
    ("empty", b"", "not JSON (Expecting value"),
    ("truncated", None, "not JSON"),
    ("not-utf8", b'{"seeds": "\xff"}', "not JSON ('utf-8' codec can't decode"),
    ("nested-past-the-stack", b"[" * 100_000, "not JSON"),
    ("a-list", b"[]", "the file: should be an object"),
    ("huge-int", b"1" * 5000, "not JSON (Exceeds the limit"),
]


@pytest.mark.parametrize(
    "content, message", [n[1:] for n in NOT_JSON], ids=[n[0] for n in NOT_JSON]
)
def test_a_results_file_that_is_not_json_is_one_line(tmp_path, command, results, content, message):
    if content is None:
        content = json.dumps(results).encode()[:5000]
    (tmp_path / "r.json").write_bytes(content)
    out = command("replicate", "--from-results", "r.json", "--out", "report")
    one_line(out, message)
    assert "pass the results.json of a replicate report" in out.stderr
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("kind", NOT_FILES)
def test_a_results_path_that_is_not_a_file_is_one_line(tmp_path, command, kind):
    make_kind(kind, tmp_path / "r.json")
    out = command("replicate", "--from-results", "r.json", "--out", "report")
    one_line(out, f"--from-results r.json: is {KINDS[kind]}; pass the results.json")


# --- replicate --out -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def report() -> inputs.ReportInput:
    return make_input(fake_runs(CLAIMED, 0.002))


@pytest.fixture
def no_figures(monkeypatch):
    """Figures drawn but not rendered: seconds less per write where their pixels do not matter."""
    monkeypatch.setattr(figures, "png", lambda fig: b"png")


@pytest.mark.parametrize("kind", [k for k in NOT_FOLDERS if k != "file"])
@pytest.mark.parametrize("under", [False, True], ids=["out", "under-out"])
def test_an_out_that_is_not_a_folder_is_refused(tmp_path, report, kind, under):
    make_kind(kind, tmp_path / "x")
    out = tmp_path / "x" / "report" if under else tmp_path / "x"
    what = re.escape(KINDS[kind])
    expected = f"which is {what}" if under else f"is {what}, not a folder"
    with pytest.raises(UserError, match=expected):
        write_report(report, out)
    assert [p.name for p in tmp_path.iterdir()] == ["x"] and files.kind(tmp_path / "x") == (
        KINDS[kind]
    )


def test_a_link_to_a_folder_is_followed_and_kept(tmp_path, report, no_figures):
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to("target")
    for _ in range(2):  # a new report, then one replacing it
        assert write_report(report, tmp_path / "link") == tmp_path / "link" / "report.md"
        assert (tmp_path / "link").is_symlink() and os.readlink(tmp_path / "link") == "target"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]
        assert (tmp_path / "target" / MANIFEST).is_file()


@pytest.mark.parametrize("out", [".", "..", "{cwd}", "{cwd}/../.."])
def test_the_current_folder_and_its_parents_are_refused_by_what_they_are(
    tmp_path, command, report, out
):
    """Replacing the folder a shell is in would leave it in a deleted folder."""
    (tmp_path / "r.json").write_text(json.dumps(inputs.to_json(report)))
    before = files_under(tmp_path)
    result = command("replicate", "--from-results", "r.json", "--out", out.format(cwd=tmp_path))
    assert_one_line_and_nothing_written(tmp_path, before, result, "is the current folder or holds")


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_the_report_honours_the_umask(tmp_path, report, no_figures, umask):
    old = os.umask(umask)
    try:
        write_report(report, tmp_path / "report")
    finally:
        os.umask(old)
    assert (tmp_path / "report").stat().st_mode & 0o777 == 0o777 & ~umask
    assert (tmp_path / "report" / "report.md").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("code, message", FULL, ids=FULL_IDS)
def test_a_report_that_cannot_be_written_leaves_the_earlier_one(
    tmp_path, report, no_figures, monkeypatch, code, message
):
    write_report(report, tmp_path / "report")
    before = (tmp_path / "report" / "report.md").read_bytes()
    written = []

    def write_bytes(self, content):
        if written:  # the first file whole, then the disk says no
            raise OSError(code, os.strerror(code))
        written.append(self)
        with open(self, "wb") as f:
            return f.write(content)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    for out in (tmp_path / "report", tmp_path / "new" / "report"):
        written.clear()
        with pytest.raises(UserError, match=f"--out .*: cannot write the report: {message}"):
            write_report(report, out)
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temporary, no new/
    assert (tmp_path / "report" / "report.md").read_bytes() == before


def test_an_out_where_nothing_can_be_written_is_one_line(tmp_path, command, report):
    (tmp_path / "r.json").write_text(json.dumps(inputs.to_json(report)))
    out = command("replicate", "--from-results", "r.json", "--out", "/proc/no-report")
    one_line(out, "--out /proc/no-report: cannot write the report: no such file or directory")


@pytest.mark.skipif(ROOT_USER, reason="chmod does not stop root's writes; /proc is tried above")
def test_an_out_in_a_read_only_folder_is_one_line(tmp_path, report, no_figures):
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(UserError, match="permission denied: use a folder you can write"):
        write_report(report, tmp_path / "ro" / "report")
    assert not any((tmp_path / "ro").iterdir())
