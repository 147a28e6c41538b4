"""The value checks of stack settings (mlops/settings.py): each returns an error text, or None for a good value."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model_code.problem import Problem, load_problem

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The project: problem folders are relative to it."""

INSTANCE_TYPE = re.compile(r"^ml\.[a-z][a-z0-9-]*\.(nano|micro|small|medium|large|xlarge|[1-9][0-9]*xlarge)$")
REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$")
ACCOUNT = re.compile(r"^[0-9]{12}$")
IMAGE_URI = re.compile(
    r"^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/[a-z0-9._/-]+"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$"
)
ARN = re.compile(
    r"^arn:aws[a-z-]*:(?P<service>[a-z0-9-]+):(?P<region>[a-z0-9-]*):(?P<account>[0-9]{12}|):(?P<resource>.+)$"
)
PROJECT_PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$")
BRANCH = re.compile(r"^[A-Za-z0-9._/-]+$")
TAG_PATTERN = re.compile(r"^[A-Za-z0-9._/-]+\*$")  # a literal prefix then `*`: what the OIDC trust rule accepts
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
TAG_VALUE = re.compile(r"^[\w .:/=+@-]{1,256}$")
MAINTENANCE_WINDOW = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun):([01][0-9]|2[0-3]):[0-5][0-9]$")
STACK_NAME = re.compile(r"^[a-z][a-z0-9-]{0,15}$")
S3_PREFIX = re.compile(r"^([A-Za-z0-9!_.*'()-]+/)+$")
"""Folders of a bucket: S3's safe key characters, ending in `/`, no empty or leading `/`."""


def id_list(kind: str) -> re.Pattern[str]:
    """Comma-separated EC2 ids of one kind: `subnet-0123abcd,subnet-...` (8 or 17 hex digits)."""
    one = rf"{kind}-([0-9a-f]{{8}}|[0-9a-f]{{17}})"
    return re.compile(rf"^{one}(,{one})*$")


def between(low: float, high: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"{value} is outside {low}..{high}"

    return check


def matches(pattern: re.Pattern[str], what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if pattern.match(value) else f"{value!r} is not {what}"

    return check


def one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"{value!r} is not one of {', '.join(choices)}"

    return check


def optional(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    return lambda value: None if value == "" else check(value)


def arn_of(service: str, resource_prefix: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        match = ARN.match(value)
        if not match:
            return f"{value!r} is not an ARN (arn:aws:{service}:...:{resource_prefix}...)"
        if match["service"] != service or not match["resource"].startswith(resource_prefix):
            return f"{value!r} is not an ARN of a {service} {resource_prefix.rstrip('/:')}"
        return None

    return check


CRON_FIELDS = (
    ("minutes", r"[0-5]?[0-9]"),
    ("hours", r"(1?[0-9]|2[0-3])"),
    ("day-of-month", r"([1-9]|[12][0-9]|3[01])W?|L|LW"),
    ("month", r"(0?[1-9]|1[0-2]|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)"),
    ("day-of-week", r"([1-7]|SUN|MON|TUE|WED|THU|FRI|SAT)(L|#[1-5])?"),
    ("year", r"(19[7-9][0-9]|2[01][0-9][0-9])"),
)


def check_cron(value: Any) -> str | None:
    """An AWS cron expression, as EventBridge and SageMaker schedules take it: cron(m h dom mon dow y)."""
    match = re.fullmatch(r"cron\((.+)\)", value.strip())
    if not match:
        return (
            f"{value!r} is not an AWS cron expression: expected cron(minutes hours day-of-month month day-of-week year)"
        )
    parts = match[1].split()
    if len(parts) != 6:
        return f"{value!r} has {len(parts)} fields; AWS cron expressions have 6"
    for part, (name, atom) in zip(parts, CRON_FIELDS, strict=True):
        if (
            part in ("*", "?")
            or re.fullmatch(rf"({atom})(-({atom}))?(/[0-9]+)?(,({atom})(-({atom}))?(/[0-9]+)?)*", part)
            or re.fullmatch(r"\*/[0-9]+", part)
        ):
            continue
        return f"{value!r}: {name} field {part!r} is malformed"
    if (parts[2] == "?") == (parts[4] == "?"):
        return f"{value!r}: exactly one of day-of-month and day-of-week must be '?'"
    return None


def number_error(value: Any) -> str | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"{value!r} is not a number"
    return None if number == number and abs(number) != float("inf") else f"{value!r} is not a finite number"


def cidr_error(value: Any) -> str | None:
    try:
        network = ipaddress.IPv4Network(value)
    except ValueError as error:
        return f"{value!r} is not an IPv4 network like 10.40.0.0/16 ({error})"
    if not 16 <= network.prefixlen <= 24:
        return f"{value!r}: a VPC's range is /16 to /24 (its subnets are 4 bits smaller, at least /28)"
    if not network.is_private:
        return f"{value!r} is not a private range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)"
    return None


def problem_error(value: Any) -> str | None:
    from model_code.problem import ProblemError

    folder = REPO_ROOT / value
    if folder.is_file():  # load_problem reads a file too, but the code bundle ships the whole folder
        return f"{value!r} is a file: name the problem's folder ({Path(value).parent.as_posix() or '.'})"
    try:
        cached_problem(folder)
    except ProblemError as error:
        return "; ".join(error.problems) + f" ({error.source})"
    return None


@functools.cache
def cached_problem(folder: Path) -> Problem:
    return load_problem(folder)


LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                      3288, 3653)
"""The retention periods CloudWatch Logs accepts (PutRetentionPolicy)."""
