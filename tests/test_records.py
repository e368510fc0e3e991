"""genlib.records: tables saved only when asked, read back, listed, and the book's expected set."""

import json
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

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


# --- issue 14, part 6: nothing a reader feeds the records is silently wrong ---------------------


def _write(folder, file_name, data):
    """A record file written by hand (as a torn, stale or hand-edited file would be)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _valid(chapter="07", name="demo", profile="gpu", **changes):
    data = {"schema": 1, "chapter": chapter, "name": name, "profile": profile,
            "device": "CPU", "date": "2026-01-01", "torch": "2.0", "columns": ["a", "b"],
            "rows": [["x", 1.0]], "note": ""}
    data.update(changes)
    return data


def test_two_writers_of_one_record_both_finish(tmp_records, monkeypatch):
    """Both writers fill their temp file before either moves it into place: with one shared temp
    name the second move found no file (FileNotFoundError)."""
    monkeypatch.setenv("GENLIB_RECORD", "1")
    both_written = threading.Barrier(2, timeout=10)
    real_replace = os.replace

    def replace_after_both_wrote(src, dst):
        both_written.wait()
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_after_both_wrote)
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(records.record, "07", "demo", ["writer"], [[i]]) for i in range(2)]
        paths = [f.result() for f in futures]
    assert paths[0] == paths[1]
    assert os.listdir(tmp_records) == [paths[0].name]  # no temp file left behind
    assert records.load("07", "demo", config.profile())["rows"] in ([[0]], [[1]])


def test_a_failed_write_leaves_no_temp_file(tmp_records, monkeypatch):
    monkeypatch.setenv("GENLIB_RECORD", "1")
    records.record("07", "demo", ["a"], [[1]])

    def no_room(src, dst):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch, pytest.raises(OSError, match="No space left"):
        patch.setattr(os, "replace", no_room)
        records.record("07", "demo", ["a"], [[2]])
    assert os.listdir(tmp_records) == [f"07--demo--{config.profile()}.json"]
    assert records.load("07", "demo", config.profile())["rows"] == [[1]]  # the old record stands


def test_records_carry_a_schema_version_checked_on_load(tmp_records, monkeypatch):
    monkeypatch.setenv("GENLIB_RECORD", "1")
    path = records.record("07", "demo", ["a"], [[1]])
    assert json.loads(path.read_text())["schema"] == 1 == records.SCHEMA
    _write(tmp_records, "07--v2--gpu.json", _valid(name="v2", schema=2))
    with pytest.raises(records.RecordError, match=r"07--v2--gpu\.json.*schema 2.*expected 1"):
        records.load("07", "v2", "gpu")
    old = _valid(name="old")
    del old["schema"]
    _write(tmp_records, "07--old--gpu.json", old)
    with pytest.raises(records.RecordError, match=r"07--old--gpu\.json.*no 'schema'"):
        records.load("07", "old", "gpu")


@pytest.mark.parametrize("key", ["chapter", "name", "profile", "device", "date", "torch", "columns", "rows", "note"])
def test_a_record_missing_a_required_key_is_refused(tmp_records, key):
    data = _valid()
    del data[key]
    _write(tmp_records, "07--demo--gpu.json", data)
    with pytest.raises(records.RecordError, match=rf"07--demo--gpu\.json.*'{key}'"):
        records.load("07", "demo", "gpu")


@pytest.mark.parametrize("changes, says", [
    ({"columns": "a, b"}, "columns"),
    ({"rows": [["x"]]}, "row 0 has 1 value"),
    ({"rows": "x"}, "rows"),
    ({"date": 20260101}, "date"),
])
def test_a_record_with_malformed_fields_is_refused(tmp_records, changes, says):
    _write(tmp_records, "07--demo--gpu.json", _valid(**changes))
    with pytest.raises(records.RecordError, match=rf"07--demo--gpu\.json.*{says}"):
        records.load("07", "demo", "gpu")


@pytest.mark.parametrize("field, value", [("profile", "cpu"), ("chapter", "08"), ("name", "other")])
def test_a_record_contradicting_its_file_name_is_refused(tmp_records, field, value):
    _write(tmp_records, "07--demo--gpu.json", _valid(**{field: value}))
    with pytest.raises(records.RecordError, match=rf"07--demo--gpu\.json.*{field} '{value}'.*file name"):
        records.load("07", "demo", "gpu")
    with pytest.warns(UserWarning, match=rf"07--demo--gpu\.json.*{field} '{value}'"):
        assert records.available("gpu") == []


def test_the_index_skips_an_unreadable_record_with_a_warning(tmp_records):
    _write(tmp_records, "07--good--gpu.json", _valid(name="good"))
    _write(tmp_records, "07--torn--gpu.json", '{"schema": 1, "chapter": "07", "na')
    _write(tmp_records, "07--list--gpu.json", "[1, 2]")
    _write(tmp_records, "07--extra--part--gpu.json", _valid(name="extra"))
    with pytest.warns(UserWarning) as caught:
        found = records.available("gpu")
    assert [r["name"] for r in found] == ["good"]
    warned = "\n".join(str(w.message) for w in caught)
    for bad in ("07--torn--gpu.json", "07--list--gpu.json", "07--extra--part--gpu.json"):
        assert bad in warned
    with pytest.raises(records.RecordError, match=r"07--torn--gpu\.json.*not valid JSON"):
        records.load("07", "torn", "gpu")
    with pytest.raises(records.RecordError, match=r"07--list--gpu\.json.*JSON object"):
        records.load("07", "list", "gpu")
    with pytest.raises(records.RecordError, match=r"07--torn--gpu\.json"):
        records.show("07", "torn", "gpu")


def test_a_record_with_a_bare_nan_is_refused(tmp_records):
    """What ``json.dumps`` wrote for a NaN before: not JSON, so other readers choke on it."""
    _write(tmp_records, "07--demo--gpu.json", json.dumps(_valid(rows=[["x", math.nan]])))
    with pytest.raises(records.RecordError, match=r"07--demo--gpu\.json.*bare NaN"):
        records.load("07", "demo", "gpu")


def test_committed_records_keep_loading():
    committed = sorted(records.RECORDS.glob("*.json"))
    assert committed, "the book commits at least one record"
    for path in committed:
        chapter, name, profile = path.stem.split("--")
        rec = records.load(chapter, name, profile)
        assert rec["schema"] == 1 and (rec["chapter"], rec["name"], rec["profile"]) == (chapter, name, profile)


@pytest.mark.parametrize("value", ["yes", "true", "2", "on", "-1"])
def test_GENLIB_RECORD_accepts_only_0_or_1(tmp_records, monkeypatch, value):
    monkeypatch.setenv("GENLIB_RECORD", value)
    with pytest.raises(ValueError, match=rf"GENLIB_RECORD={value!r}.*'0'.*'1'"):
        records.record("07", "demo", ["a"], [[1]])
    assert not tmp_records.exists()
    for off in ("", "0"):
        monkeypatch.setenv("GENLIB_RECORD", off)
        assert records.record("07", "demo", ["a"], [[1]]) is None


def _strict_json(text):
    def refuse(token):
        raise ValueError(f"bare {token} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_are_written_as_valid_json_and_read_back(tmp_records, monkeypatch):
    monkeypatch.setenv("GENLIB_RECORD", "1")
    row = ["diverged", math.nan, math.inf, -math.inf, None, 1.5, 3, True]
    path = records.record("07", "demo", list("abcdefgh"), [row])
    text = path.read_text()
    assert _strict_json(text)["rows"] == [["diverged", "NaN", "Infinity", "-Infinity", None, 1.5, 3, True]]
    back = records.load("07", "demo", config.profile())["rows"][0]
    assert back[0] == "diverged" and math.isnan(back[1]) and back[2] == math.inf and back[3] == -math.inf
    assert back[4:] == [None, 1.5, 3, True]
    assert [r["rows"][0][4] for r in records.available(config.profile())] == [None]  # a blank stays blank


def test_cells_a_record_cannot_hold_are_refused_naming_the_file(tmp_records, monkeypatch):
    monkeypatch.setenv("GENLIB_RECORD", "1")
    name = f"07--demo--{config.profile()}.json"
    # the spellings of non-finite numbers are reserved, so a label cannot come back as a float
    with pytest.raises(ValueError, match=rf"{name}.*row 0, column 'a'.*'NaN'.*reserved"):
        records.record("07", "demo", ["a"], [["NaN"]])
    with pytest.raises(TypeError, match=rf"{name}.*row 1, column 'b'.*object"):
        records.record("07", "demo", ["a", "b"], [[1, 2], [3, object()]])
    with pytest.raises(TypeError, match=r"columns must be strings.*\[1, 'b'\]"):
        records.record("07", "demo", [1, "b"], [[1, 2]])
    assert not tmp_records.exists() or os.listdir(tmp_records) == []
