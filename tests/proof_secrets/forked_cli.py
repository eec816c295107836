"""Run `persona-sync` many times as real processes, without paying its imports each time.

A fresh interpreter spends about 0.6 s of CPU importing persona-sync, pydantic, ldap3,
msal and the Graph SDK before a command does anything; a test that runs a hundred
commands would spend a minute on it. A :class:`ForkedCli` is a process that imports them
once and then forks one child per command: each child is a separate process with its own
working directory, environment, stdin (/dev/null), stdout and stderr (files, so not a
terminal) and exit code, and runs the CLI's real entry point, so logging is configured
exactly as in production. Only the imports are shared.

Each server runs one command at a time; use several for parallel runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

FORK_SERVER = textwrap.dedent(
    """
    import json
    import os
    import signal
    import sys
    import traceback

    import persona_sync.cli.main
    import persona_sync.directory.ldap
    import persona_sync.doctor

    try:
        import msal
        import msgraph.graph_service_client
        import persona_sync.directory.entra
        from msgraph.generated.models.user import User

        User().get_field_deserializers()  # imports about 1,400 model modules (seconds)
    except ImportError:  # installed without the Entra extra
        pass

    protocol_out = os.fdopen(os.dup(1), "w")
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                os.close(protocol_out.fileno())
                signal.alarm(request["timeout"])  # a command that hangs dies (SIGALRM)
                os.chdir(request["cwd"])
                os.environ.clear()
                os.environ.update(request["env"])
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                os.dup2(os.open(request["stdout"], flags, 0o600), 1)
                os.dup2(os.open(request["stderr"], flags, 0o600), 2)
                sys.argv = ["persona-sync", *request["argv"]]
                if request["patch"]:
                    exec(request["patch"], {"__name__": "__patch__"})
                try:
                    persona_sync.cli.main.main()
                    code = 0
                except SystemExit as exit:
                    code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        protocol_out.write(json.dumps(os.waitstatus_to_exitcode(status)) + "\\n")
        protocol_out.flush()
    """
)


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str


class ForkedCli:
    """A fork server for `persona-sync` commands; a context manager."""

    def __init__(self, scratch: Path, timeout: float = 120.0) -> None:
        self.scratch = scratch  # where each command's stdout and stderr are written
        self.timeout = timeout
        self._lock = threading.Lock()
        self._count = 0
        scratch.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [sys.executable, "-c", FORK_SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, argv: list[str], *, cwd: Path, env: dict[str, str], patch: str = "") -> Finished:
        """Run one command in a child process; ``patch`` is Python run in the child first."""
        with self._lock:
            self._count += 1
            out = self.scratch / f"{id(self)}-{self._count}.out"
            err = self.scratch / f"{id(self)}-{self._count}.err"
            request = {
                "argv": argv,
                "cwd": str(cwd),
                "env": env,
                "patch": patch,
                "stdout": str(out),
                "stderr": str(err),
                "timeout": int(self.timeout),
            }
            assert self._process.stdin is not None and self._process.stdout is not None
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            answer = _readline(self._process, self.timeout + 10)
        return Finished(int(json.loads(answer)), out.read_text(), err.read_text())

    def close(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> ForkedCli:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _readline(process: subprocess.Popen[str], timeout: float) -> str:
    """The server's next line, or an error if it died or stays silent past ``timeout``."""
    assert process.stdout is not None
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not line or not line[0]:
        process.kill()
        raise RuntimeError(
            f"the persona-sync fork server stopped answering (exit {process.poll()})"
        )
    return line[0]
