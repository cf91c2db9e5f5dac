"""What Docker Compose would give a service as its environment, without Docker.

Enough of Compose's rules (the Compose specification, "Interpolation" and
"env_file") for ``docker-compose.yml`` and the ``.env`` files of this project:

* the project ``.env`` (beside the compose file) and the shell's environment are
  the interpolation source; the shell wins;
* ``${VAR}``, ``$VAR``; ``${VAR:-default}`` (unset *or empty*: default),
  ``${VAR-default}`` (unset only); ``${VAR:?message}`` / ``${VAR?message}``
  (Compose stops with the message); ``${VAR:+other}`` / ``${VAR+other}``;
  defaults may themselves hold ``${...}``; ``$$`` is a literal ``$``;
* a service's ``env_file`` entries (``path``/``required`` or a plain string) are
  read in order, later files winning, then ``environment:`` wins over them all;
  a name listed in ``environment`` without a value takes the shell's value;
* dotenv lines: ``NAME=value``, optional ``export``, ``#`` comments (inline ones
  need a space before them in unquoted values), single quotes (literal) and
  double quotes (escapes ``\\n``, ``\\"``, ``\\\\``; interpolated), unquoted values
  stripped and interpolated.

Multi-line quoted values are not supported (none of ours has one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import yaml

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ComposeError(Exception):
    """Compose would refuse to start (``${VAR:?message}`` on an unset variable, a missing required env_file)."""


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            out.append(_expand(text[i + 2 : end], variables))
            i = end + 1
        else:
            match = _NAME.match(text, i + 1)
            if not match:
                raise ComposeError(f"invalid interpolation at {text[i:]!r}")
            out.append(variables.get(match.group(), ""))
            i = match.end()
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for index in range(start, len(text)):
        if text.startswith("${", index):
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    raise ComposeError(f"unclosed ${{ in {text!r}")


def _expand(body: str, variables: Mapping[str, str]) -> str:
    match = _NAME.match(body)
    if not match:
        raise ComposeError(f"invalid variable name in ${{{body}}}")
    name, rest = match.group(), body[match.end() :]
    value = variables.get(name)
    if not rest:
        return value or ""
    for operator in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(operator):
            argument = rest[len(operator) :]
            break
    else:
        raise ComposeError(f"invalid interpolation ${{{body}}}")
    missing = value is None or (operator.startswith(":") and value == "")
    if operator.endswith("-"):
        return interpolate(argument, variables) if missing else value
    if operator.endswith("?"):
        if missing:
            raise ComposeError(f"required variable {name} is missing a value: {interpolate(argument, variables)}")
        return value
    return "" if missing else interpolate(argument, variables)


def parse_dotenv(text: str, variables: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``NAME=value`` pairs of a dotenv file; values interpolated with ``variables`` and earlier lines."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        stripped = stripped.removeprefix("export ").lstrip()
        name, sep, raw = stripped.partition("=")
        if not sep:
            continue  # a bare name: Compose takes it from the shell; no shell here
        scope = {**(variables or {}), **found}
        found[name.strip()] = _dotenv_value(raw.strip(), scope)
    return found


def _dotenv_value(raw: str, scope: Mapping[str, str]) -> str:
    if raw.startswith("'") and raw.count("'") >= 2:
        return raw[1 : raw.index("'", 1)]
    if raw.startswith('"') and len(raw) > 1:
        match = re.match(r'"((?:[^"\\]|\\.)*)"', raw)
        if match:
            unescaped = re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), match.group(1))
            return interpolate(unescaped, scope)
    value = re.split(r"\s#", raw, maxsplit=1)[0].strip()
    return interpolate(value, scope)


def _interpolate_tree(node, variables: Mapping[str, str]):
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [_interpolate_tree(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, variables) for key, value in node.items()}
    return node


def service_environment(compose_file: Path, service: str, *, shell: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment Compose gives ``service``, with the project ``.env`` beside ``compose_file``."""
    shell = dict(shell or {})
    project = compose_file.parent
    dotenv_path = project / ".env"
    dotenv = parse_dotenv(dotenv_path.read_text(), shell) if dotenv_path.exists() else {}
    variables = {**dotenv, **shell}
    # Interpolate the service only: Compose does the whole file, but an unset ${X:?} of
    # another service would stop it too -- services here share the same variables.
    definition = yaml.safe_load(compose_file.read_text())["services"][service]
    definition = _interpolate_tree(definition, variables)
    environment: dict[str, str] = {}
    for entry in _env_files(definition.get("env_file")):
        path = project / entry["path"]
        if not path.exists():
            if entry.get("required", True):
                raise ComposeError(f"env file {path} not found")
            continue
        environment.update(parse_dotenv(path.read_text()))
    environment.update(_environment_section(definition.get("environment"), shell))
    return environment


def _env_files(value) -> list[dict]:
    if value is None:
        return []
    entries = value if isinstance(value, list) else [value]
    return [{"path": entry} if isinstance(entry, str) else entry for entry in entries]


def _environment_section(value, shell: Mapping[str, str]) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, list):  # ["NAME=value", "NAME"]
        value = dict([*item.split("=", 1), None][:2] for item in value)
    resolved = {}
    for name, item in value.items():
        if item is None:
            if name in shell:
                resolved[name] = shell[name]
            continue
        resolved[name] = str(item).lower() if isinstance(item, bool) else str(item)
    return resolved
