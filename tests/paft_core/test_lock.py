"""A second `paft run` on the same project folder is refused with one line, the first one untouched."""

import subprocess
import sys

import pytest

from paft.cli import main
from paft_core import lock

HOLD = ("from paft_core import lock; import time\n"
        "with lock.exclusive():\n    print('held', flush=True); time.sleep(60)")


def test_a_second_run_is_refused_while_the_first_holds_the_lock(paft_home, capsys, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(lock.RunLocked, match=rf"pid {holder.pid}\) is using"):
            with lock.exclusive():
                pass
        config = tmp_path / "spec.yaml"
        config.write_text("name: locked\n")
        assert main(["run", str(config)]) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith("paft: error: another paft run")
    finally:
        holder.kill()
        holder.wait()
    with lock.exclusive():  # released with its process
        pass
