"""The run directory: one writer at a time, and a killed writer never blocks the next."""

import subprocess
import sys

import pytest

from minigpt.errors import RunDirectoryError
from minigpt.runs.log import run_lock

HOLD = """
import sys, time
from minigpt.runs.log import run_lock
with run_lock(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_a_run_directory_has_one_writer_and_a_killed_one_lets_go(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(RunDirectoryError, match=rf"in use by another run \(pid {holder.pid}\)"):
            with run_lock(tmp_path):
                pass
    finally:
        holder.kill()  # as kill -9 would: no chance to clean up
        holder.wait()
    with run_lock(tmp_path):  # the stale lock is no lock
        with run_lock(tmp_path):  # and this process may nest its own
            pass


def test_a_file_is_not_a_run_directory(tmp_path):
    (tmp_path / "notes").write_text("mine")
    with pytest.raises(RunDirectoryError, match="is a file, not a run directory"):
        with run_lock(tmp_path / "notes"):
            pass
    assert (tmp_path / "notes").read_text() == "mine"
