"""Static check of the compose deployment: what would stop `docker-compose build` or `up` before a container runs.

No container engine runs in CI, so docker-compose.yml, the Dockerfiles it builds and .env.example are
checked by reading them: every build context and Dockerfile exists; every COPY/ADD source is in the
build context (and not left out by .dockerignore); every mounted host path exists; every ``${VAR}``
the compose file uses is documented in .env.example; no two services publish the same host port; and
every long-running service has a healthcheck (a service counts as a one-shot job only when it says
``restart: "no"``, so a forgotten restart policy is not mistaken for one).

    python -m dse_platform.deploy.compose_check [docker-compose.yml]
"""

from __future__ import annotations

import json
import posixpath
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: the "service" of a problem that belongs to no service
PROJECT = "(project)"

#: compose's interpolation: $$ (a literal $), ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error},
#: ${VAR?error}, $VAR
_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                       r"|(?P<named>[A-Za-z_]\w*))")
#: a line of .env.example that documents a variable, set (NAME=value) or commented out (# NAME=value)
_ENV_LINE = re.compile(r"^\s*(?P<comment>#\s*)?(?P<name>[A-Za-z_]\w*)=(?P<value>.*)$")


@dataclass(frozen=True)
class Problem:
    """One defect: the service and field it is in, what is wrong, and how to fix it."""

    service: str
    field: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.service}: {self.field}: {self.message} (fix: {self.fix})"


def check(compose_file: Path, env_example: Path | None = None) -> list[Problem]:
    """Every problem of ``compose_file`` and the Dockerfiles it builds; empty when none is found.

    ``env_example`` documents the variables the file may use (default: ``.env.example`` beside it);
    its set values (``NAME=value``) also resolve the published ports.
    """
    root = compose_file.parent
    compose = yaml.safe_load(compose_file.read_text()) or {}
    env_path = env_example or root / ".env.example"
    if not env_path.is_file():
        return [Problem(PROJECT, env_path.name, f"{env_path} does not exist",
                        "commit a .env.example documenting every variable the compose file uses")]
    documented = documented_variables(env_path)
    env = {name: value for name, value in documented.items() if value is not None}
    services: dict[str, dict[str, Any]] = compose.get("services") or {}
    problems = _undocumented(compose, documented)
    built: set[Path] = set()
    for name, service in services.items():
        problems += _build(name, service, root, env, built)
        problems += _mounts(name, service, root, env)
        problems += _healthcheck(name, service)
    problems += _port_collisions(services, env)
    return problems


def documented_variables(env_example: Path) -> dict[str, str | None]:
    """Variables .env.example documents: the value of a set line, None for a commented-out one."""
    found: dict[str, str | None] = {}
    for line in env_example.read_text().splitlines():
        match = _ENV_LINE.match(line)
        if match and (match["comment"] is None or match["name"] not in found):
            found[match["name"]] = None if match["comment"] is not None else match["value"].strip()
    return found


def variables(text: str) -> list[str]:
    """Names of the variables compose would substitute in ``text`` (``$$`` is a literal dollar)."""
    return [m["braced"] or m["named"] for m in _VARIABLE.finditer(text) if not m["escaped"]]


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``text`` as compose would read it with ``env``; a variable with no value and no default becomes empty."""
    def value(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name, op = match["braced"] or match["named"], match["op"] or ""
        current = env.get(name)
        if op in (":-", "-") and (current is None or (op == ":-" and current == "")):
            return match["arg"]
        return current or ""

    return _VARIABLE.sub(value, text)


# ---- variables ----------------------------------------------------------------------------------------------
def _strings(node: Any, field: str) -> Iterator[tuple[str, str]]:
    """(field path, text) of every string value under ``node`` (compose interpolates values, not keys)."""
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _strings(child, f"{field}.{key}" if field else str(key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _strings(child, f"{field}[{index}]")
    elif isinstance(node, str):
        yield field, node


def _undocumented(compose: dict[str, Any], documented: Mapping[str, str | None]) -> list[Problem]:
    """One problem per variable missing from .env.example, at its first use.

    ``x-`` blocks are skipped: they are templates, and their values are checked where services merge them.
    """
    first_use: dict[str, tuple[str, str]] = {}
    for section, body in compose.items():
        if section.startswith("x-"):
            continue
        owners = body.items() if section == "services" and isinstance(body, dict) else [(PROJECT, {section: body})]
        for owner, node in owners:
            for field, text in _strings(node, ""):
                for name in variables(text):
                    first_use.setdefault(name, (owner, field))
    return [Problem(owner, field, f"uses ${{{name}}}, which .env.example does not document",
                    f"add a commented `{name}=<default>` line with what it means to .env.example")
            for name, (owner, field) in first_use.items() if name not in documented]


# ---- builds -------------------------------------------------------------------------------------------------
def _build(name: str, service: dict[str, Any], root: Path, env: Mapping[str, str], built: set[Path]) -> list[Problem]:
    """The build context and Dockerfile exist, and so does every COPY/ADD source (once per Dockerfile)."""
    build = service.get("build")
    if build is None:
        return []
    if isinstance(build, str):
        build = {"context": build}
    context_text = interpolate(str(build.get("context", ".")), env)
    if "://" in context_text or context_text.startswith("git@"):
        return []  # a remote context: nothing on this disk to check
    context = root / context_text
    if not context.is_dir():
        return [Problem(name, "build.context", f"the build context {context_text} is not a folder",
                        "point build.context at the folder the Dockerfile builds from")]
    dockerfile_text = interpolate(str(build.get("dockerfile", "Dockerfile")), env)
    dockerfile = context / dockerfile_text
    if not dockerfile.is_file():
        return [Problem(name, "build.dockerfile", f"{dockerfile_text} does not exist in the context {context_text}",
                        "name an existing Dockerfile (relative to build.context)")]
    if dockerfile.resolve() in built:
        return []
    built.add(dockerfile.resolve())
    ignore = _dockerignore(context)
    return [Problem(name, f"build ({dockerfile_text} line {line})", message, fix)
            for line, message, fix in _copy_problems(dockerfile, context, ignore)]


def _instructions(dockerfile: Path) -> Iterator[tuple[int, str, str]]:
    """(first line, instruction, arguments) of each Dockerfile instruction, continuation lines joined."""
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(dockerfile.read_text().splitlines(), 1):
        line = raw.strip()
        if line.startswith("#") or (not parts and not line):
            continue  # comments, also inside a continued instruction, are not part of it
        if not parts:
            start = number
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        instruction, _, arguments = " ".join(parts).partition(" ")
        parts = []
        yield start, instruction.upper(), arguments.strip()


def _copy_problems(dockerfile: Path, context: Path, ignore: list[tuple[bool, re.Pattern[str]]]
                   ) -> Iterator[tuple[int, str, str]]:
    """(line, message, fix) for each COPY/ADD source missing from the build context.

    Sources from another stage (``--from``), URLs and ones naming build variables are not files here.
    A glob may match nothing (an optional file) as long as the instruction copies something.
    """
    for line, instruction, arguments in _instructions(dockerfile):
        if instruction not in ("COPY", "ADD"):
            continue
        words = json.loads(arguments) if arguments.startswith("[") else arguments.split()
        flags = [word for word in words if word.startswith("--")]
        if any(flag.startswith("--from=") for flag in flags):
            continue
        *sources, _destination = [word for word in words if not word.startswith("--")]
        copied = False
        for source in sources:
            if "$" in source or "://" in source:
                copied = True
                continue
            relative = posixpath.normpath(source.lstrip("/"))
            if any(char in relative for char in "*?["):
                copied |= any(not _ignored(path.relative_to(context).as_posix(), ignore)
                              for path in context.glob(relative))
            elif not (context / relative).exists():
                yield line, f"{instruction} source {source} does not exist in the build context", \
                    "create it, or remove it from the Dockerfile"
            elif _ignored(relative, ignore):
                yield line, f"{instruction} source {source} is left out of the build context by .dockerignore", \
                    "remove the matching .dockerignore pattern, or stop copying it"
            else:
                copied = True
        if sources and not copied and all(any(char in s for char in "*?[") for s in sources):
            yield line, f"no file in the build context matches {instruction} {' '.join(sources)}", \
                "add one of the files, or copy something that always exists with it"


def _dockerignore(context: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception `!`, pattern) of the context's .dockerignore, in order."""
    path = context / ".dockerignore"
    if not path.is_file():
        return []
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = posixpath.normpath(line.removeprefix("!").strip().lstrip("/"))
        rules.append((exception, re.compile(_glob_regex(pattern))))
    return rules


def _glob_regex(pattern: str) -> str:
    """A .dockerignore pattern as a regular expression: ``**`` spans folders, ``*`` and ``?`` do not."""
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
            continue
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[" and "]" in pattern[i + 1:]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1:end]
            out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
            i = end
        else:
            out += re.escape(char)
        i += 1
    return out


def _ignored(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether .dockerignore leaves ``relative`` out: the last pattern matching it or a parent folder decides."""
    parts = relative.split("/")
    candidates = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    ignored = False
    for exception, rule in rules:
        if any(rule.fullmatch(candidate) for candidate in candidates):
            ignored = not exception
    return ignored


# ---- mounts, healthchecks, ports ------------------------------------------------------------------------
def _mounts(name: str, service: dict[str, Any], root: Path, env: Mapping[str, str]) -> list[Problem]:
    """Every bind-mounted host path exists (named and anonymous volumes are the engine's business)."""
    problems = []
    for index, entry in enumerate(service.get("volumes") or []):
        if isinstance(entry, dict):
            if entry.get("type") != "bind":
                continue
            source = interpolate(str(entry.get("source", "")), env)
        else:
            text = interpolate(str(entry), env)
            source = text.split(":", 1)[0]
            if ":" not in text or not source.startswith((".", "/", "~")):
                continue
        path = Path(source).expanduser()
        if not (path if path.is_absolute() else root / path).exists():
            problems.append(Problem(name, f"volumes[{index}]", f"the mounted host path {source} does not exist",
                                    "create it (or commit it), or mount a named volume instead"))
    return problems


def _healthcheck(name: str, service: dict[str, Any]) -> list[Problem]:
    """A long-running service (any restart policy but "no") has a healthcheck others can wait on."""
    if service.get("restart") in ("no", False):
        return []
    health = service.get("healthcheck") or {}
    test = health.get("test")
    if test and not health.get("disable") and test not in ("NONE", ["NONE"]):
        return []
    return [Problem(name, "healthcheck", "a long-running service has no healthcheck test",
                    "add a healthcheck that asks the service itself; for a one-shot job set restart: \"no\"")]


def _published(entry: Any, env: Mapping[str, str]) -> list[tuple[str, int, str]]:
    """(host address, host port, protocol) an entry of ``ports`` publishes; none for a container-only port."""
    if isinstance(entry, dict):
        published = entry.get("published")
        port = interpolate(str(published), env) if published is not None else ""
        ip, protocol, host = str(entry.get("host_ip", "")), str(entry.get("protocol", "tcp")), port
    else:
        text, _, protocol = interpolate(str(entry), env).partition("/")
        parts = text.rsplit(":", 2)
        if len(parts) == 1:
            return []
        ip, host = (parts[0] if len(parts) == 3 else ""), parts[-2]
    first, _, last = host.partition("-")
    if not first.isdigit() or (last and not last.isdigit()):
        return []
    return [(ip, port, protocol or "tcp") for port in range(int(first), int(last or first) + 1)]


def _port_collisions(services: dict[str, dict[str, Any]], env: Mapping[str, str]) -> list[Problem]:
    """No two services (nor one twice) publish the same host port on overlapping addresses."""
    taken: list[tuple[str, str, int, str]] = []
    problems = []
    for name, service in services.items():
        for entry in service.get("ports") or []:
            for ip, port, protocol in _published(entry, env):
                for owner, other_ip, other_port, other_protocol in taken:
                    overlap = ip == other_ip or {ip, other_ip} & {"", "0.0.0.0", "::"}
                    if (port, protocol) == (other_port, other_protocol) and overlap:
                        problems.append(Problem(
                            name, "ports", f"host port {port}/{protocol} is also published by {owner}",
                            "publish a different host port (its *_HOST_PORT variable in .env)"))
                taken.append((name, ip, port, protocol))
    return problems


def main(argv: list[str]) -> int:
    """Print every problem of the compose file (default: the project's); exit status 1 when there is one."""
    from dse_platform.config import PROJECT_DIR

    problems = check(Path(argv[0]) if argv else PROJECT_DIR / "docker-compose.yml")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
