"""Every example runs with the command examples/README.md gives, and exits 0.

The commands are read from the README, so the documentation and the test
cannot drift apart. Each runs unchanged in a fresh working directory that
links ``examples/`` to the repository's, so the files an example writes
(disk stores, snapshots) land in a temporary directory. Runs go four at a
time (the users mostly wait). Locust's master port comes from the environment, so that runs with
``--processes`` never talk to another run's master.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 120


def readme_commands() -> dict[str, str]:
    """Example file name -> the command the README gives for it."""
    text = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    commands = {}
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in block.splitlines():
            match = re.match(r"locust -f examples/(\w+\.py)\b", line)
            if match:
                assert match.group(1) not in commands, f"two commands for {match.group(1)}"
                commands[match.group(1)] = line
    return commands


COMMANDS = readme_commands()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(name: str, command: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    workdir.mkdir()
    (workdir / "examples").symlink_to(EXAMPLES)
    port = str(_free_port())
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        LOCUST_MASTER_BIND_HOST="127.0.0.1",
        LOCUST_MASTER_BIND_PORT=port,
        LOCUST_MASTER_NODE_HOST="127.0.0.1",
        LOCUST_MASTER_NODE_PORT=port,
    )
    return subprocess.run(
        shlex.split(command), cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("examples")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(_run, name, command, root / name) for name, command in COMMANDS.items()}
        return {name: future.result() for name, future in futures.items()}


def test_every_example_has_a_command_in_the_readme() -> None:
    examples = sorted(path.name for path in EXAMPLES.glob("*.py"))
    assert sorted(COMMANDS) == examples


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_example_docstring_gives_the_readme_command(name: str) -> None:
    docstring = (EXAMPLES / name).read_text(encoding="utf-8").split('"""')[1]
    assert COMMANDS[name] in [line.strip() for line in docstring.splitlines()]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_example_runs_and_exits_0(name: str, runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    done = runs[name]
    output = done.stdout + done.stderr
    failures = [line for line in output.splitlines() if "check failed" in line or "Traceback" in line]
    assert done.returncode == 0, f"{COMMANDS[name]}\nexited {done.returncode}\n" + "\n".join(failures or output.splitlines()[-30:])
    assert not failures, "\n".join(failures)
