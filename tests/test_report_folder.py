"""`replicate --out DIR` writes its report whole and never deletes what the project did not
write: a missing folder is created, an earlier report of ours is replaced, anything else is
refused with one line and left as it was (issue 16)."""

import json

import pytest

from pipeline.core.errors import UserError
from pipeline.replication.report import inputs
from pipeline.replication.report.folder import MANIFEST, check_out_dir, write_report
from tests.test_report import CLAIMED, fake_runs, make_input

OUR_FILES = {"report.md", "report.html", "results.json", MANIFEST, "figures"}


@pytest.fixture(scope="module")
def report() -> inputs.ReportInput:
    return make_input(fake_runs(CLAIMED, 0.002))


def test_a_missing_folder_is_created_with_the_report_and_its_manifest(tmp_path, report):
    out = tmp_path / "a" / "report"
    check_out_dir(out)
    assert not out.exists()  # the check creates nothing
    assert write_report(report, out) == out / "report.md"
    assert {p.name for p in out.iterdir()} == OUR_FILES
    manifest = json.loads((out / MANIFEST).read_text())
    assert "report.md" in manifest["files"] and "figures/table_1.png" in manifest["files"]
    assert [p.name for p in tmp_path.joinpath("a").iterdir()] == ["report"]  # no temporary left


def test_an_empty_folder_is_used(tmp_path, report):
    write_report(report, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == OUR_FILES


def test_an_earlier_report_is_replaced(tmp_path, report):
    out = tmp_path / "report"
    write_report(report, out)
    (out / "report.md").write_text("old")
    write_report(report, out)
    assert (out / "report.md").read_text().startswith("# Replication")
    assert {p.name for p in tmp_path.iterdir()} == {"report"}


def test_a_folder_with_a_users_file_is_refused_and_left_intact(tmp_path, report):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds files that replicate did not write \(notes.txt\)"):
        write_report(report, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_users_file_added_to_an_earlier_report_is_refused_and_kept(tmp_path, report):
    out = tmp_path / "report"
    write_report(report, out)
    (out / "figures" / "my_plot.png").write_bytes(b"mine")
    with pytest.raises(UserError, match="figures/my_plot.png"):
        check_out_dir(out)
    with pytest.raises(UserError):
        write_report(report, out)
    assert (out / "figures" / "my_plot.png").read_bytes() == b"mine"
    assert (out / "report.md").exists()


def test_a_manifest_that_is_not_ours_does_not_make_a_folder_ours(tmp_path):
    (tmp_path / MANIFEST).write_text(json.dumps({"files": ["data.csv"]}))
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(UserError):
        check_out_dir(tmp_path)


@pytest.mark.parametrize("under", [False, True])
def test_a_file_is_refused(tmp_path, under):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    with pytest.raises(UserError, match="which is a file" if under else "is a file"):
        check_out_dir(path / "report" if under else path)
    assert path.read_text() == "mine"


def test_a_failure_while_writing_leaves_the_earlier_report(tmp_path, report, monkeypatch):
    from pipeline.replication.report import page

    out = tmp_path / "report"
    write_report(report, out)
    before = (out / "report.md").read_text()

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(page, "to_html", broken)
    with pytest.raises(RuntimeError):
        write_report(report, out)
    assert (out / "report.md").read_text() == before
    assert {p.name for p in tmp_path.iterdir()} == {"report"}


def test_the_cli_refuses_a_users_folder_in_one_line(tmp_path, report, command):
    """--from-results into a folder of a user's: one line, exit 2, the folder untouched."""
    results = tmp_path / "results.json"
    results.write_text(json.dumps(inputs.to_json(report)))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    out = command("replicate", "--from-results", str(results), "--out", str(mine))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --out ") and "notes.txt" in lines[0]
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert (mine / "notes.txt").read_text() == "keep me"
    out = command("replicate", "--from-results", str(results), "--out", str(results))
    assert out.returncode == 2 and "is a file" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_replicate_refuses_a_users_folder_before_any_run(tmp_path, command, data_dir):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    out = command("replicate", "--quick", "--out", str(mine), "--data-dir", str(data_dir))
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: --out ") and out.stderr.count("\n") == 1, out.stderr
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert not (tmp_path / "mlflow.db").exists()  # checked before the store is opened
