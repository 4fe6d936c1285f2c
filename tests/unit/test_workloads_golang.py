"""testbed.workloads.golang: agnhost's command lines as cobra/pflag read them, Go's value
syntax and the way Go words its output."""

from __future__ import annotations

import errno
from datetime import UTC, datetime, timedelta, timezone

import pytest

from testbed.workloads.agnhost import COMMANDS
from testbed.workloads.golang import (
    Flag,
    HelpRequested,
    UsageError,
    canonical_header_key,
    content_type,
    errno_text,
    format_duration,
    go_duration,
    go_json,
    join_host_port,
    log_line,
    parse_bool,
    parse_command,
    parse_flags,
    parse_int,
    split_host_port,
    suggestions,
    time_string,
)

HOSTNAME_FLAGS = [Flag("tcp", "bool", False), Flag("udp", "bool", False), Flag("http", "bool", True),
                  Flag("port", "int", 9376)]


@pytest.mark.parametrize(("argv", "values", "rest"), [
    ([], {"tcp": False, "udp": False, "http": True, "port": 9376}, []),
    (["--tcp", "--http=false", "--port", "80"], {"tcp": True, "udp": False, "http": False, "port": 80}, []),
    (["--udp", "--http=0", "--port=8081"], {"tcp": False, "udp": True, "http": False, "port": 8081}, []),
    (["--tcp=T", "--http=False"], {"tcp": True, "udp": False, "http": False, "port": 9376}, []),
    (["a", "--tcp", "b"], {"tcp": True, "udp": False, "http": True, "port": 9376}, ["a", "b"]),
    (["--tcp", "false"], {"tcp": True, "udp": False, "http": True, "port": 9376}, ["false"]),   # never a value
    (["--", "--tcp"], {"tcp": False, "udp": False, "http": True, "port": 9376}, ["--tcp"]),
    (["-", "--port=0x10"], {"tcp": False, "udp": False, "http": True, "port": 16}, ["-"]),
    (["--port", "-1"], {"tcp": False, "udp": False, "http": True, "port": -1}, []),
])
def test_flags_as_pflag_reads_them(argv, values, rest):
    assert parse_flags(HOSTNAME_FLAGS, argv) == (values, rest)


def test_underscores_read_as_dashes_as_cli_run_normalizes_them():
    values, _ = parse_flags([Flag("http-port", "int", 8080)], ["--http_port=9"])
    assert values == {"http-port": 9}


@pytest.mark.parametrize(("argv", "message"), [
    (["--bogus"], "unknown flag: --bogus"),
    (["--tcp=yes"], 'invalid argument "yes" for "--tcp" flag: strconv.ParseBool: parsing "yes": invalid syntax'),
    (["--port=80x"], 'invalid argument "80x" for "--port" flag: strconv.ParseInt: parsing "80x": invalid syntax'),
    (["--port"], "flag needs an argument: --port"),
    (["---port=1"], "bad flag syntax: ---port=1"),
    (["-x"], "unknown shorthand flag: 'x' in -x"),
])
def test_flag_errors_in_pflag_words(argv, message):
    with pytest.raises(UsageError) as info:
        parse_flags(HOSTNAME_FLAGS, argv)
    assert str(info.value) == message


def test_shorthands():
    flags = [Flag("v", "int", 0, shorthand="v"), Flag("quiet", "bool", False, shorthand="q")]
    assert parse_flags(flags, ["-v", "3"])[0] == {"v": 3, "quiet": False}
    assert parse_flags(flags, ["-qv=4"])[0] == {"v": 4, "quiet": True}
    assert parse_flags(flags, ["-v5"])[0] == {"v": 5, "quiet": False}
    with pytest.raises(UsageError, match="flag needs an argument: 'v' in -v"):
        parse_flags(flags, ["-v"])


def test_agnhost_commands():
    netexec = parse_command(COMMANDS, ["netexec", "--http-port=8083", "--udp-port", "8081"])
    assert netexec.command.name == "netexec" and netexec["http-port"] == 8083 and netexec["udp-port"] == 8081
    assert netexec["sctp-port"] == -1 and netexec["delay-shutdown"] == 0 and netexec.args == []
    hostname = parse_command(COMMANDS, ["serve-hostname", "--tcp", "--http=false", "--port", "9376"])
    assert (hostname["tcp"], hostname["udp"], hostname["http"], hostname["port"]) == (True, False, False, 9376)
    probe = parse_command(COMMANDS, ["connect", "--timeout", "5s", "web:80", "--protocol=udp"])
    assert (probe.args, probe["timeout"], probe["protocol"], probe["udp-data"]) == (["web:80"], 5.0, "udp", "hostname")
    # cli.Run's logging flags, before or after the subcommand, are accepted and dropped
    assert parse_command(COMMANDS, ["-v", "2", "pause", "--vmodule=x=1"]).values == {}


@pytest.mark.parametrize(("argv", "message"), [
    (["foo"], 'unknown command "foo" for "app"'),
    (["netexc"], 'unknown command "netexc" for "app"\n\nDid you mean this?\n\tnetexec\n'),
    (["netexec", "extra"], "accepts at most 0 arg(s), received 1"),
    (["pause", "a", "b"], "accepts at most 0 arg(s), received 2"),
    (["connect"], "accepts 1 arg(s), received 0"),
    (["connect", "a:1", "b:2"], "accepts 1 arg(s), received 2"),
    (["connect", "a:1", "--timeout=soon"],
     'invalid argument "soon" for "--timeout" flag: time: invalid duration "soon"'),
    (["connect", "a:1", "--sctp-data=x"], "unknown flag: --sctp-data"),
    (["serve-hostname", "--tcp", "no"], "accepts at most 0 arg(s), received 1"),
    (["--bogus"], "unknown flag: --bogus"),
])
def test_command_errors_in_cobra_words(argv, message):
    with pytest.raises(UsageError) as info:
        parse_command(COMMANDS, argv)
    assert str(info.value) == message


@pytest.mark.parametrize("argv", [[], ["-h"], ["--help"], ["netexec", "--help"], ["connect", "-h"]])
def test_help(argv):
    with pytest.raises(HelpRequested) as info:
        parse_command(COMMANDS, argv)
    text = info.value.args[0]
    assert "Usage:" in text and ("app [command]" in text if len(argv) < 2 else f"app {argv[0]}" in text)


def test_help_lists_flags_with_their_defaults():
    with pytest.raises(HelpRequested) as info:
        parse_command(COMMANDS, ["serve-hostname", "--help"])
    lines = info.value.args[0].splitlines()
    assert any("--port int" in line and "(default 9376)" in line for line in lines)
    assert any("--http " in line and "(default true)" in line for line in lines)


def test_suggestions():
    assert suggestions("conect", ["connect", "netexec"]) == "\n\nDid you mean this?\n\tconnect\n"
    assert suggestions("serve", ["serve-hostname"]) == "\n\nDid you mean this?\n\tserve-hostname\n"
    assert suggestions("zzz", ["connect"]) == ""


@pytest.mark.parametrize(("text", "seconds"), [
    ("1s", 1.0), ("500ms", 0.5), ("1m30s", 90.0), ("0", 0.0), ("1.5s", 1.5), ("2h", 7200.0),
    ("100us", 1e-4), ("100µs", 1e-4), (".5s", 0.5), ("-1s", -1.0), ("+2m", 120.0), ("1h2m3s4ms", 3723.004)])
def test_go_durations(text, seconds):
    assert go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "message"), [
    ("", 'time: invalid duration ""'), ("soon", 'time: invalid duration "soon"'),
    ("s", 'time: invalid duration "s"'), ("1", 'time: missing unit in duration "1"'),
    ("1s2", 'time: missing unit in duration "1s2"'), ("1x", 'time: unknown unit "x" in duration "1x"'),
    (".s", 'time: invalid duration ".s"')])
def test_bad_go_durations(text, message):
    with pytest.raises(ValueError) as info:
        go_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize(("text", "value"), [
    ("8080", 8080), ("-1", -1), ("+5", 5), ("0", 0), ("0x1F", 31), ("010", 8), ("0o10", 8),
    ("0b101", 5), ("1_000", 1000)])
def test_parse_int(text, value):
    assert parse_int(text) == value


@pytest.mark.parametrize("text", ["", " 1", "1.0", "abc", "08", "0x", "1__0", "9223372036854775808"])
def test_bad_ints(text):
    with pytest.raises(ValueError, match="strconv.ParseInt"):
        parse_int(text)


def test_parse_bool():
    assert [parse_bool(t) for t in ("1", "t", "T", "TRUE", "true", "True")] == [True] * 6
    assert [parse_bool(t) for t in ("0", "f", "F", "FALSE", "false", "False")] == [False] * 6
    for text in ("yes", "", "tRUE", "2"):
        with pytest.raises(ValueError, match=f'strconv.ParseBool: parsing "{text}": invalid syntax'):
            parse_bool(text)


@pytest.mark.parametrize(("text", "result"), [
    ("a:80", ("a", "80")), ("10.0.0.1:http", ("10.0.0.1", "http")), ("[::1]:53", ("::1", "53")),
    (":80", ("", "80")), ("a:", ("a", ""))])
def test_split_host_port(text, result):
    assert split_host_port(text) == result


@pytest.mark.parametrize(("text", "message"), [
    ("127.0.0.1", "address 127.0.0.1: missing port in address"),
    ("::1:80", "address ::1:80: too many colons in address"),
    ("[::1]", "address [::1]: missing port in address"),
    ("[::1:80", "address [::1:80: missing ']' in address"),
    ("[::1]x:80", "address [::1]x:80: missing port in address"),
    ("a]:80", "address a]:80: unexpected ']' in address")])
def test_bad_host_ports(text, message):
    with pytest.raises(ValueError) as info:
        split_host_port(text)
    assert str(info.value) == message


def test_output_as_go_writes_it():
    assert join_host_port("10.0.0.1", 80) == "10.0.0.1:80"
    assert join_host_port("fd00::1", 80) == "[fd00::1]:80"
    assert join_host_port("::ffff:10.0.0.1", 5) == "10.0.0.1:5"     # Go shows a mapped IPv4 as IPv4
    assert go_json({"responses": ["a<b"], "errors": ["x&y>z"]}) == \
        '{"errors":["x\\u0026y\\u003ez"],"responses":["a\\u003cb"]}'
    assert canonical_header_key("x-forwarded-for") == "X-Forwarded-For"
    assert canonical_header_key("USER-AGENT") == "User-Agent"
    assert content_type(b"pod-1") == "text/plain; charset=utf-8"
    assert content_type(b"<p>Hello</p>") == "text/html; charset=utf-8"
    assert content_type(b"<pod>") == "text/plain; charset=utf-8"
    assert content_type(b"\x00\x01") == "application/octet-stream"
    assert errno_text(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")) == "connection refused"
    assert errno_text(OSError("No SCTP Here")) == "no sctp here"
    assert [format_duration(s) for s in (0, 1, 1.5, 90, 0.5, 3600)] == ["0s", "1s", "1.5s", "1m30s", "500ms", "1h0m0s"]
    now = datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)
    assert log_line("GET /hostname", now) == "2024/01/02 03:04:05 GET /hostname\n"
    assert time_string(now, 1.5) == "2024-01-02 03:04:05.12 +0000 UTC m=+1.500000000"
    cet = now.astimezone(timezone(timedelta(hours=1), "CET")).replace(microsecond=0)
    assert time_string(cet, 0.25) == "2024-01-02 04:04:05 +0100 CET m=+0.250000000"
