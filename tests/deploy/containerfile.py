"""Read a Containerfile and carry out its stages in folders, without a container runtime.

Each stage gets a folder standing for its root filesystem; every absolute path in the
file (in RUN, ENV, WORKDIR, COPY, --mount) is mapped into that folder, so `/wheels` in
the build stage is `<root>/build/wheels`. RUN lines run with `sh -c` as in an image build,
with the stage's ARG and ENV values in the environment. Lines that set up the image's
users (groupadd, useradd, install -d) need root on a real system: they are not run, but
returned, so a test can check them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# An absolute path in a command or value: a slash not preceded by a word character.
_ABSOLUTE = re.compile(r"(?<![\w.$}-])/(?=[A-Za-z])")
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
USER_SETUP = {"groupadd", "useradd", "install"}


@dataclass(frozen=True)
class Instruction:
    keyword: str
    text: str
    line: int

    def exec_form(self) -> list[str]:
        """ENTRYPOINT/CMD in JSON (exec) form; the shell form would need a shell in PID 1."""
        value = json.loads(self.text)
        assert isinstance(value, list), f"line {self.line}: {self.keyword} is not a JSON array"
        return [str(v) for v in value]


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name} has no {keyword}"
        return found[-1]


def parse(text: str) -> tuple[list[Instruction], list[Stage]]:
    """The global ARGs and the stages, continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction, as the builders allow
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        keyword, _, rest = " ".join(p for p in pending if p).partition(" ")
        instructions.append(Instruction(keyword.upper(), rest.strip(), start))
        pending = []
    assert not pending, "the file ends inside a continued line"
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.text.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, words[0]))
        elif stages:
            stages[-1].instructions.append(instruction)
        else:
            assert instruction.keyword == "ARG", f"line {instruction.line}: only ARG before FROM"
            global_args.append(instruction)
    return global_args, stages


def substitute(text: str, values: Mapping[str, str]) -> str:
    """$NAME and ${NAME} as the builder expands them in ENV, WORKDIR and COPY."""
    return _VARIABLE.sub(lambda m: values.get(m.group(1) or m.group(2), ""), text)


@dataclass
class StageRun:
    """What carrying out a stage left: its folder, environment, and the lines not run."""

    stage: Stage
    root: Path
    env: dict[str, str]
    workdir: str
    user_setup: list[Instruction]

    def path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def map(self, text: str) -> str:
        return _ABSOLUTE.sub(str(self.root) + "/", text)


class Build:
    """Runs the stages of one Containerfile in order, in folders under root."""

    def __init__(
        self,
        containerfile: Path,
        context: Path,
        root: Path,
        base_env: Mapping[str, str],
        build_env: Mapping[str, str],
    ) -> None:
        """base_env stands for the base image's environment; build_env is added to RUN only."""
        self.global_args, self.stages = parse(containerfile.read_text())
        self.context = context
        self.root = root
        self.base_env = dict(base_env)
        self.build_env = dict(build_env)
        self.done: dict[str, StageRun] = {}

    def run_stage(self, name: str, build_args: Mapping[str, str]) -> StageRun:
        stage = next(s for s in self.stages if s.name == name)
        root = self.root / stage.name
        (root / "tmp").mkdir(parents=True)
        run = StageRun(stage, root, dict(self.base_env), "/", [])
        global_args = self._args(self.global_args, build_args, {})
        args: dict[str, str] = {}
        for instruction in stage.instructions:
            keyword, text = instruction.keyword, instruction.text
            if keyword == "ARG":
                args.update(self._args([instruction], build_args, global_args))
            elif keyword == "ENV":
                for item in shlex.split(text):
                    key, _, value = item.partition("=")
                    run.env[key] = substitute(run.map(value), {**args, **run.env})
            elif keyword == "WORKDIR":
                run.workdir = os.path.join(run.workdir, substitute(text, {**args, **run.env}))
                run.path(run.workdir).mkdir(parents=True, exist_ok=True)
            elif keyword == "COPY":
                self._copy(run, instruction)
            elif keyword == "RUN":
                self._run(run, instruction, args)
        self.done[name] = run
        return run

    def _args(
        self, lines: list[Instruction], build_args: Mapping[str, str], scope: Mapping[str, str]
    ) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in lines:
            key, has_default, default = instruction.text.partition("=")
            default = json.loads(default) if default.startswith('"') else default
            values[key] = build_args.get(key, default if has_default else scope.get(key, ""))
        return values

    def _copy(self, run: StageRun, instruction: Instruction) -> None:
        words = shlex.split(instruction.text)
        assert not any(w.startswith("--from") for w in words), "COPY --from: not supported here"
        *sources, target = [w for w in words if not w.startswith("--")]
        dest = run.path(os.path.join(run.workdir, target))
        for source in sources:
            origin = self.context / source
            if origin.is_dir():
                shutil.copytree(origin, dest, dirs_exist_ok=True)
            else:
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, dest / origin.name)

    def _run(self, run: StageRun, instruction: Instruction, args: Mapping[str, str]) -> None:
        text = instruction.text
        mounts: list[Path] = []
        while text.startswith("--"):
            flag, _, text = text.partition(" ")
            mounts.append(self._mount(run, flag))
        command = text.strip()
        programs = {part.split()[0] for part in command.split("&&")}
        if programs <= USER_SETUP:
            run.user_setup.append(instruction)
            return
        try:
            subprocess.run(
                ["sh", "-c", run.map(command)],
                cwd=run.path(run.workdir),
                env={**args, **run.env, **self.build_env},
                check=True,
                capture_output=True,
                text=True,
            )
        except subprocess.CalledProcessError as exc:
            raise AssertionError(
                f"line {instruction.line}: RUN failed ({exc.returncode}): {command}\n"
                f"{exc.stdout}\n{exc.stderr}"
            ) from None
        finally:
            for target in mounts:
                shutil.rmtree(target)

    def _mount(self, run: StageRun, flag: str) -> Path:
        """--mount=type=bind,from=STAGE,source=A,target=B: B holds a copy of that stage's A."""
        assert flag.startswith("--mount="), f"unsupported RUN flag {flag}"
        options = dict(item.split("=", 1) for item in flag[len("--mount=") :].split(","))
        assert options.get("type") == "bind", flag
        source = self.done[options["from"]].path(options["source"])
        target = run.path(options["target"])
        shutil.copytree(source, target)
        return target
