"""Pure: how agnhost's Go binary reads its command line and words its output, for the testbed's
agnhost (agnhost.py, netexec.py) to do the same.

Command lines as cobra and pflag parse them (agnhost's root command is "app"):
`--name=value`, `--name value`, a bool as `--name` or `--name=false` (never `--name false`),
flags anywhere among the arguments, `--` ending them, `_` read as `-` in names (component-base's
cli.Run), `-h`/`--help`; errors worded as pflag and cobra word them, which cli.Run prints as
`Error: ...` with exit status 1. Values as Go parses them: strconv.ParseInt (base 0),
strconv.ParseBool, time.ParseDuration. Output as Go writes it: log lines, time.Time.String,
json.Marshal, net.JoinHostPort, canonical header keys, http.DetectContentType for text,
syscall.Errno's text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

ROOT = "app"        # agnhost's root command: `unknown command "x" for "app"`


class UsageError(ValueError):
    """A command line cobra refuses; str() is its message (printed as `Error: <message>`)."""


class HelpRequested(Exception):
    """-h/--help, or the root command alone: the help text is args[0]; exit status 0."""


@dataclass(frozen=True)
class Flag:
    name: str
    kind: str                 # "bool" | "int" | "string" | "duration"
    default: object
    usage: str = ""
    shorthand: str = ""


@dataclass(frozen=True)
class Command:
    name: str
    short: str
    flags: tuple[Flag, ...] = ()
    max_args: int | None = 0          # cobra.MaximumNArgs(n)
    exact_args: int | None = None     # cobra.ExactArgs(n)
    use: str = ""                     # "connect [host:port]"


@dataclass
class Parsed:
    command: Command
    values: dict[str, object] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> object:
        return self.values[name]


# What cli.Run adds to every command (logs.AddFlags); accepted and ignored here.
PERSISTENT = (Flag("v", "int", 0, "number for the log level verbosity", "v"),
              Flag("vmodule", "string", "", "comma-separated list of pattern=N settings"),
              Flag("log-flush-frequency", "duration", 5.0, "Maximum number of seconds between log flushes"))
HELP = Flag("help", "bool", False, "help for {name}", "h")


# -- values ------------------------------------------------------------------------------------

def go_quote(text: str) -> str:
    """Go's %q of a string (strconv.Quote), for the printable text command lines hold."""
    return json.dumps(text, ensure_ascii=False)


def parse_bool(text: str) -> bool:
    """strconv.ParseBool."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"strconv.ParseBool: parsing {go_quote(text)}: invalid syntax")


_INT = re.compile(r"[+-]?(0[xX](_?[0-9a-fA-F])+|0[bB](_?[01])+|0[oO](_?[0-7])+|0(_?[0-7])*|[1-9](_?[0-9])*)")


def parse_int(text: str) -> int:
    """strconv.ParseInt(text, 0, 64): decimal, 0x.., 0o.., 0b.., a leading 0 for octal."""
    if not _INT.fullmatch(text):
        raise ValueError(f"strconv.ParseInt: parsing {go_quote(text)}: invalid syntax")
    sign, digits = (-1, text[1:]) if text[0] == "-" else (1, text.lstrip("+"))
    digits = digits.replace("_", "")
    if len(digits) > 1 and digits[0] == "0" and digits[1] in "0123456789":
        digits = "0o" + digits[1:]
    value = sign * int(digits, 0)
    if not -(2 ** 63) <= value < 2 ** 63:
        raise ValueError(f"strconv.ParseInt: parsing {go_quote(text)}: value out of range")
    return value


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]*)")


def go_duration(text: str) -> float:
    """time.ParseDuration, in seconds: "1s", "500ms", "1m30s", "-1.5h", "0"; ValueError with
    Go's message otherwise."""
    quoted = go_quote(text)
    rest = text[1:] if text[:1] in "+-" else text
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0.0
    while rest:
        m = _PART.match(rest)
        number, unit = m.group(1), m.group(2)
        if number in ("", "."):
            raise ValueError(f"time: invalid duration {quoted}")
        if not unit:
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in _UNITS:
            raise ValueError(f"time: unknown unit {go_quote(unit)} in duration {quoted}")
        total += float(number) * _UNITS[unit]
        rest = rest[len(number) + len(unit):]
    return -total if text.startswith("-") else total


def _set(flag: Flag, text: str) -> object:
    if flag.kind == "bool":
        return parse_bool(text)
    if flag.kind == "int":
        return parse_int(text)
    if flag.kind == "duration":
        return go_duration(text)
    return text


# -- command lines -----------------------------------------------------------------------------

def _normalize(name: str) -> str:
    return name.replace("_", "-")     # cliflag.WordSepNormalizeFunc


def _flag_name(flag: Flag) -> str:
    return f"-{flag.shorthand}, --{flag.name}" if flag.shorthand else f"--{flag.name}"


def parse_flags(flags: Iterable[Flag], argv: list[str]) -> tuple[dict[str, object], list[str]]:
    """pflag's parse of `argv` against `flags`: (values by name, the other arguments in order)."""
    flags = list(flags)
    by_name = {f.name: f for f in flags}
    by_short = {f.shorthand: f for f in flags if f.shorthand}
    values: dict[str, object] = {f.name: f.default for f in flags}
    positional: list[str] = []
    args = list(argv)

    def assign(flag: Flag, text: str) -> None:
        try:
            values[flag.name] = _set(flag, text)
        except ValueError as err:
            raise UsageError(f"invalid argument {go_quote(text)} for {go_quote(_flag_name(flag))} "
                             f"flag: {err}") from None

    while args:
        s = args.pop(0)
        if len(s) < 2 or s[0] != "-":
            positional.append(s)
        elif s == "--":
            positional += args
            break
        elif s[1] == "-":
            name, eq, value = s[2:].partition("=")
            if not name or name[0] in "-=":
                raise UsageError(f"bad flag syntax: {s}")
            flag = by_name.get(_normalize(name))
            if flag is None:
                if _normalize(name) == "help":
                    raise HelpRequested()
                raise UsageError(f"unknown flag: --{name}")
            if eq:
                assign(flag, value)
            elif flag.kind == "bool":
                values[flag.name] = True
            elif args:
                assign(flag, args.pop(0))
            else:
                raise UsageError(f"flag needs an argument: {s}")
        else:
            shorts = s[1:]
            while shorts:
                c, shorts = shorts[0], shorts[1:]
                flag = by_short.get(c)
                if flag is None:
                    if c == "h":
                        raise HelpRequested()
                    raise UsageError(f"unknown shorthand flag: '{c}' in {s}")
                if shorts.startswith("="):
                    assign(flag, shorts[1:])
                    shorts = ""
                elif flag.kind == "bool":
                    values[flag.name] = True
                elif shorts:
                    assign(flag, shorts)
                    shorts = ""
                elif args:
                    assign(flag, args.pop(0))
                else:
                    raise UsageError(f"flag needs an argument: '{c}' in {s}")
    return values, positional


def _levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def suggestions(typed: str, names: Iterable[str]) -> str:
    """cobra's "Did you mean this?" tail of an unknown command's error ("" when none)."""
    low = typed.lower()
    near = [n for n in names if _levenshtein(low, n.lower()) <= 2 or n.lower().startswith(low)]
    return "\n\nDid you mean this?\n" + "".join(f"\t{n}\n" for n in near) if near else ""


def _takes_value(arg: str, flags: list[Flag]) -> bool:
    """Does `arg` (a flag before the subcommand) consume the next argument? (cobra's stripFlags)"""
    if "=" in arg or not arg.startswith("-") or arg == "--":
        return False
    name = _normalize(arg.lstrip("-"))
    flag = next((f for f in flags if (f.name if arg.startswith("--") else f.shorthand) == name), None)
    return flag is not None and flag.kind != "bool"


def parse_command(commands: Iterable[Command], argv: list[str]) -> Parsed:
    """cobra's Execute over a root command "app" with `commands`: the subcommand, its flag
    values and its arguments; UsageError or HelpRequested (with the help text) otherwise."""
    commands = {c.name: c for c in commands}
    root_flags = [*PERSISTENT, HELP]
    at, skip = None, False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg == "--":
            break
        elif arg.startswith("-") and len(arg) > 1:
            skip = _takes_value(arg, root_flags)
        else:
            at = i
            break
    if at is None:
        parse_flags(root_flags, argv)              # the root's own flag errors come first
        raise HelpRequested(root_help(commands.values()))
    name = argv[at]
    command = commands.get(name)
    if command is None:
        raise UsageError(f"unknown command {go_quote(name)} for {go_quote(ROOT)}"
                         f"{suggestions(name, commands)}")
    flags = [*command.flags, *PERSISTENT, HELP]
    try:
        values, args = parse_flags(flags, argv[:at] + argv[at + 1:])
    except HelpRequested:
        raise HelpRequested(command_help(command)) from None
    if values.pop("help"):
        raise HelpRequested(command_help(command))
    for f in PERSISTENT:
        values.pop(f.name)
    if command.exact_args is not None and len(args) != command.exact_args:
        raise UsageError(f"accepts {command.exact_args} arg(s), received {len(args)}")
    if command.max_args is not None and len(args) > command.max_args:
        raise UsageError(f"accepts at most {command.max_args} arg(s), received {len(args)}")
    return Parsed(command, values, args)


def _flag_lines(flags: Iterable[Flag], name: str) -> list[str]:
    rows = []
    for f in flags:
        left = (f"-{f.shorthand}, " if f.shorthand else "    ") + f"--{f.name}"
        if f.kind != "bool":
            left += " " + f.kind
        usage = f.usage.format(name=name)
        if f.default not in (False, "", 0, 0.0, None):
            shown = {"bool": lambda v: "true", "string": go_quote, "duration": format_duration}.get(f.kind, str)
            usage += f" (default {shown(f.default)})"
        rows.append((left, usage))
    width = max(len(left) for left, _ in rows)
    return [f"  {left.ljust(width)}   {usage}" for left, usage in rows]


def command_help(command: Command) -> str:
    use = command.use or command.name
    lines = [command.short, "", "Usage:", f"  {ROOT} {use} [flags]", "", "Flags:",
             *_flag_lines([*command.flags, HELP], command.name), "", "Global Flags:",
             *_flag_lines(PERSISTENT, command.name)]
    return "\n".join(lines) + "\n"


def root_help(commands: Iterable[Command]) -> str:
    commands = sorted(commands, key=lambda c: c.name)
    width = max(len(c.name) for c in commands)
    lines = ["Usage:", f"  {ROOT} [command]", "", "Available Commands:",
             *[f"  {c.name.ljust(width)} {c.short}" for c in commands], "", "Flags:",
             *_flag_lines([HELP, *PERSISTENT], ROOT), "",
             f'Use "{ROOT} [command] --help" for more information about a command.']
    return "\n".join(lines) + "\n"


# -- output ------------------------------------------------------------------------------------

def format_duration(seconds: float) -> str:
    """time.Duration.String for whole and fractional seconds: 0s, 1s, 1.5s, 1m30s, 500ms."""
    if seconds == 0:
        return "0s"
    if abs(seconds) < 1:
        return f"{seconds * 1000:g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = (f"{int(hours)}h" if hours else "") + (f"{int(minutes)}m" if hours or minutes else "")
    return out + f"{secs:g}s"


def log_line(message: str, now: datetime) -> str:
    """A line as Go's log package writes it: "2006/01/02 15:04:05 message\\n"."""
    return f"{now:%Y/%m/%d %H:%M:%S} {message.rstrip(chr(10))}\n"


def time_string(now: datetime, monotonic: float) -> str:
    """time.Now().String(): "2006-01-02 15:04:05.123456 +0000 UTC m=+1.500000001"."""
    frac = f"{now.microsecond:06d}".rstrip("0")
    zone = now.tzname() or "UTC"
    return (f"{now:%Y-%m-%d %H:%M:%S}{'.' + frac if frac else ''} {now:%z} {zone} "
            f"m=+{monotonic:.9f}")


def join_host_port(host: str, port: int | str) -> str:
    """net.JoinHostPort; an IPv4-mapped IPv6 address as Go prints it (IPv4)."""
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def errno_text(err: OSError) -> str:
    """An OSError's errno as Go's syscall.Errno prints it: "connection refused" (lower case)."""
    return (err.strerror or str(err)).lower()


def go_json(value: object) -> str:
    """json.Marshal: keys sorted, no spaces, <, > and & escaped as Go escapes them for HTML."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def canonical_header_key(key: str) -> str:
    """textproto.CanonicalMIMEHeaderKey: "x-forwarded-for" -> "X-Forwarded-For"."""
    if not key or any(c in key for c in " \t:") or not key.isascii():
        return key
    return "-".join(part[:1].upper() + part[1:].lower() for part in key.split("-"))


_HTML_TAGS = ("<!DOCTYPE HTML", "<HTML", "<HEAD", "<SCRIPT", "<IFRAME", "<H1", "<DIV", "<FONT",
              "<TABLE", "<A", "<STYLE", "<TITLE", "<B", "<BODY", "<BR", "<P", "<!--")


def content_type(body: bytes) -> str:
    """http.DetectContentType for what netexec writes: HTML, XML, text, or binary."""
    head = body[:512].lstrip(b"\t\n\x0c\r ")
    upper = head.upper()
    for tag in _HTML_TAGS:
        t = tag.encode()
        if upper.startswith(t) and len(head) > len(t) and head[len(t)] in b" >":
            return "text/html; charset=utf-8"
    if head.startswith(b"<?xml"):
        return "text/xml; charset=utf-8"
    if any(b < 0x20 and b not in b"\t\n\x0c\r\x1b" for b in body[:512]):
        return "application/octet-stream"
    return "text/plain; charset=utf-8"


def split_host_port(hostport: str) -> tuple[str, str]:
    """net.SplitHostPort; ValueError with Go's AddrError text ("address X: missing port in address")."""
    def bad(why: str) -> ValueError:
        return ValueError(f"address {hostport}: {why}")
    i = hostport.rfind(":")
    if i < 0:
        raise bad("missing port in address")
    j = k = 0
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise bad("missing ']' in address")
        if end + 1 == len(hostport):
            raise bad("missing port in address")
        if end + 1 != i:
            raise bad("too many colons in address" if hostport[end + 1] == ":" else "missing port in address")
        host, j, k = hostport[1:end], 1, end + 1
    else:
        host = hostport[:i]
        if ":" in host:
            raise bad("too many colons in address")
    if "[" in hostport[j:]:
        raise bad("unexpected '[' in address")
    if "]" in hostport[k:]:
        raise bad("unexpected ']' in address")
    return host, hostport[i + 1:]
