"""genlib.records: tables saved only when asked, read back, listed, and the book's expected set."""

import json

import pytest

from genlib import config, records


@pytest.fixture
def tmp_records(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "RECORDS", tmp_path / "records")
    return tmp_path / "records"


def test_record_writes_only_with_the_switch(tmp_records, monkeypatch):
    monkeypatch.delenv("GENLIB_RECORD", raising=False)
    assert records.record("07", "demo", ["a", "b"], [[1, 2.5]]) is None
    assert not tmp_records.exists()
    monkeypatch.setenv("GENLIB_RECORD", "1")
    path = records.record("07", "demo", ["a", "b"], [[1, 2.5]], note="n=1")
    data = json.loads(path.read_text())
    assert path.name == f"07--demo--{config.profile()}.json"
    assert data["columns"] == ["a", "b"] and data["rows"] == [[1, 2.5]] and data["note"] == "n=1"
    assert data["device"] == records.device_name()
    assert records.load("07", "demo", config.profile()) == data
    assert records.load("07", "missing", config.profile()) is None
    assert [(r["chapter"], r["name"]) for r in records.available(config.profile())] == [("07", "demo")]
    assert records.available("no-such-profile") == []


def test_bad_records_are_refused(tmp_records, monkeypatch):
    monkeypatch.setenv("GENLIB_RECORD", "1")
    with pytest.raises(ValueError, match="every row needs 2 values"):
        records.record("07", "demo", ["a", "b"], [[1]])
    for chapter, name in (("07", "a--b"), ("", "x"), ("0/7", "x")):
        with pytest.raises(ValueError, match="without '/' or '--'"):
            records.record(chapter, name, ["a"], [[1]])


def test_expected_lists_the_chapters_record_calls():
    wanted = records.expected()
    assert ("07", "schedules") in wanted and ("08", "guidance") in wanted and ("08", "ddim") in wanted
    assert len(wanted) == len(set(wanted))
    # every committed record is one a chapter still writes
    assert {(r["chapter"], r["name"]) for r in records.available("gpu")} <= set(wanted)
