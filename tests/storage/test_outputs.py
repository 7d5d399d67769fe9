"""Output folders: the tool knows its own files one by one, replaces only a folder of its own kind,
builds a new one beside the old and swaps it in whole, and holds the folder's lock while it checks
and writes. (The refusals, one by one, are in tests/test_bad_inputs.py.)"""

import errno
import os
import stat

import pytest

from stmgt.errors import DataError
from stmgt.storage.lock import FolderLock, lock_file
from stmgt.storage.outputs import (MARKER, FolderKind, check_file_target, check_folder_target, locked_target,
                                   marked_kind, os_failure, remove_ours, staged_folder, write_marker)

TABLES = FolderKind("tables", frozenset({"speed.csv", "nodes.csv"}))
NOTES = FolderKind("notes", frozenset({"notes.txt"}))


def ours(folder, *names):
    """A folder of TABLES as the tool leaves it: its marker and some of its files."""
    folder.mkdir(parents=True)
    write_marker(folder, TABLES)
    for name in names:
        (folder / name).write_text(name)
    return folder


def test_the_tool_knows_its_own_files_one_by_one(tmp_path):
    folder = ours(tmp_path / "out", "speed.csv")
    (folder / ".nodes.csv.k3x_9q2a").write_text("half")     # a killed write's temporary file
    (folder / "thesis.txt").write_text("the user's")
    (folder / "nodes.csv.bak").write_text("the user's")
    (folder / "nodes.csv").mkdir()                          # named like ours, but a folder
    (folder / "link.csv").symlink_to(folder / "speed.csv")
    assert sorted(p.name for p in folder.iterdir() if TABLES.ours(p)) == [".nodes.csv.k3x_9q2a", MARKER, "speed.csv"]
    assert TABLES.foreign(folder) == ["link.csv", "nodes.csv.bak", "nodes.csv/", "thesis.txt"]


def test_the_marker_names_the_kind(tmp_path):
    folder = ours(tmp_path / "out")
    assert marked_kind(folder) == "tables" and marked_kind(tmp_path) is None
    (folder / MARKER).write_text("[1, 2]")                  # not ours after all
    assert marked_kind(folder) is None


def test_a_target_is_replaced_only_when_it_is_ours_and_overwrite_is_given(tmp_path):
    assert check_folder_target(tmp_path / "new", TABLES, overwrite=False) is False
    (tmp_path / "empty").mkdir()
    assert check_folder_target(tmp_path / "empty", TABLES, overwrite=False) is False
    folder = ours(tmp_path / "out", "speed.csv", "nodes.csv")
    assert check_folder_target(folder, TABLES, overwrite=True) is True
    with pytest.raises(DataError, match="already holds a tables; pass --overwrite"):
        check_folder_target(folder, TABLES, overwrite=False)
    with pytest.raises(DataError, match="--save .*holds a tables, not a notes"):
        check_folder_target(folder, NOTES, overwrite=True, option="--save")


def test_a_file_target_is_replaced_only_when_it_is_ours_and_overwrite_is_given(tmp_path):
    mine = lambda path: path.read_text().startswith("anchor_time,")     # noqa: E731
    path = tmp_path / "forecast.csv"
    check_file_target(path, overwrite=False, ours=mine, what="forecast")        # new: fine
    path.write_text("")
    check_file_target(path, overwrite=False, ours=mine, what="forecast")        # empty: fine
    path.write_text("anchor_time,node_id\n")
    check_file_target(path, overwrite=True, ours=mine, what="forecast")
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        check_file_target(path, overwrite=False, ours=mine, what="forecast")
    path.write_text("budget,2025\n")
    with pytest.raises(DataError, match="this tool did not write"):
        check_file_target(path, overwrite=True, ours=mine, what="forecast")


def test_a_new_folder_appears_only_once_complete(tmp_path):
    target = tmp_path / "sub" / "out"
    with staged_folder(target, TABLES) as building:
        (building / "speed.csv").write_text("1")
        assert not target.exists() and building.parent == target.parent and building.name.startswith(".out")
        assert marked_kind(building) == "tables"
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "speed.csv"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert [p.name for p in target.parent.iterdir()] == ["out"]             # no staging left


def test_a_replaced_folder_keeps_what_the_user_saved_into_it_meanwhile(tmp_path):
    target = ours(tmp_path / "out", "speed.csv", "nodes.csv")
    with staged_folder(target, TABLES) as building:
        (building / "speed.csv").write_text("new")
        (target / "notes.txt").write_text("saved while the tool was writing")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "notes.txt", "speed.csv"]
    assert (target / "speed.csv").read_text() == "new"                        # the old nodes.csv is gone
    assert (target / "notes.txt").read_text() == "saved while the tool was writing"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("failure,raised", [(ValueError("bad row"), ValueError),
                                            (OSError(errno.ENOSPC, "No space left on device"), DataError)],
                         ids=["error", "disk-full"])
def test_a_failed_write_leaves_the_old_folder_untouched(tmp_path, failure, raised):
    target = ours(tmp_path / "out", "speed.csv")
    with pytest.raises(raised) as err:
        with staged_folder(target, TABLES, option="--save") as building:
            (building / "speed.csv").write_text("half")
            raise failure
    assert (target / "speed.csv").read_text() == "speed.csv"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    if raised is DataError:
        assert f"--save {target}" in str(err.value) and "free some space" in str(err.value)
        assert ".partial-" not in str(err.value)


def test_the_lock_is_held_while_the_target_is_checked_and_written(tmp_path):
    target = ours(tmp_path / "out", "speed.csv")
    with locked_target(target, TABLES, overwrite=True) as replacing:
        assert replacing is True and lock_file(target).exists()
        with pytest.raises(DataError, match=f"--out {target}: is being written by another process .*pid {os.getpid()}"):
            FolderLock(target, f"--out {target}")
    assert not lock_file(target).exists()
    with FolderLock(target, "again"):                                         # released: free to take
        pass


def test_the_lock_is_released_when_the_check_refuses(tmp_path):
    target = ours(tmp_path / "out", "speed.csv")
    with pytest.raises(DataError, match="pass --overwrite"):
        with locked_target(target, TABLES, overwrite=False):
            pytest.fail("the block runs only after the check")
    assert not lock_file(target).exists()


def test_removing_ours_keeps_the_users_files(tmp_path):
    folder = ours(tmp_path / "out", "speed.csv", "nodes.csv")
    (folder / "thesis.txt").write_text("the user's")
    assert [p.name for p in remove_ours(folder, TABLES)] == ["thesis.txt"]
    assert [p.name for p in folder.iterdir()] == ["thesis.txt"]
    (folder / "thesis.txt").unlink()
    write_marker(folder, TABLES)
    assert remove_ours(folder, TABLES) == [] and not folder.exists()         # nothing left: the folder goes


def test_an_os_failure_in_words():
    assert os_failure(OSError(errno.EACCES, "Permission denied")) == "Permission denied"
    assert os_failure(OSError(errno.ENOSPC, "No space left on device")) == (
        "No space left on device; free some space there or write elsewhere")
