"""`tracengent`: run the local platform, and inspect or steer the state it keeps.

Every command works on a data dir (`--data`, default $TRACENGENT_DATA or ~/.tracengent): the
SQLite store that `tracengent dev` and embedded SDK clients (`TRACENGENT_URL=local`) write. The
store is safe to share between processes, so `approve`, `revoke` and `grant` act on a platform
that is running right now, from another terminal.

Output is for people and for shell scripts: tables and timelines on stdout, and `grant` prints
nothing but the token there, so `TOKEN=$(tracengent grant …)` works. An expected failure is one
`tracengent: error: …` line on stderr and exit code 1 (usage errors: 2), never a traceback.

The platform is imported only by the commands that need it, so `tracengent --help` works (and a
missing `tracengent[platform]` extra is reported as such) without its dependencies.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import math
import os
import socket
import sqlite3
import sys
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

if TYPE_CHECKING:
    from .platform import Platform, Store

PROG = "tracengent"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_LAST = 20
DEFAULT_TTL_S = 3600
_INSTALL_HINT = 'pip install "tracengent[platform]"'
N = TypeVar("N", int, float)


class CliError(Exception):
    """An expected failure: reported as one `tracengent: error: …` line, exit code 1."""


# --- output ----------------------------------------------------------------------------------------


def _write(text: str, stream: TextIO) -> None:
    """Print `text`; a terminal that cannot encode ✓/→ gets `?` instead of a crash."""
    try:
        print(text, file=stream, flush=True)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        print(text.encode(encoding, "replace").decode(encoding), file=stream, flush=True)


def _one_line(message: str) -> str:
    """A multi-line message (a policy's problem list) folded onto one line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return "failed"
    head, rest = lines[0], "; ".join(lines[1:])
    if not rest:
        return head
    return f"{head} {rest}" if head.endswith(":") else f"{head}; {rest}"


def _error(message: str) -> None:
    _write(f"{PROG}: error: {_one_line(message)}", sys.stderr)


# --- opening state ---------------------------------------------------------------------------------


def _data_dir(value: str | None) -> Path:
    if value:
        return Path(value).expanduser()
    from .platform import default_data_dir

    return default_data_dir()


def _open_store(data: str | None) -> Store:
    """The store of an existing data dir: reading or deciding needs state that is already there.

    A mistyped `--data` must not silently create an empty store and report "no traces".
    """
    from .platform import Store

    where = _data_dir(data)
    if not where.is_dir():
        raise CliError(
            f"no platform data in {where}: run `{PROG} dev` (or an SDK with TRACENGENT_URL=local)"
            " first, or point --data / $TRACENGENT_DATA at an existing data dir"
        )
    try:
        return Store.in_data_dir(where)
    except (sqlite3.Error, OSError, RuntimeError) as error:
        raise CliError(f"cannot open the platform store in {where}: {error}") from None


def _policy_file(value: str | None) -> str | None:
    """`--policy`, else $TRACENGENT_POLICY (what embedded clients use), else the built-in one."""
    return value or os.environ.get("TRACENGENT_POLICY") or None


def _open_platform(policy: str | None, data: str | None) -> Platform:
    from .platform import PolicyError, open_platform

    policy_file = _policy_file(policy)
    where = _data_dir(data) if data != ":memory:" else data
    try:
        return open_platform(policy_file, where)
    except PolicyError as error:  # names the file and every problem in it
        raise CliError(str(error)) from None
    except (sqlite3.Error, OSError, RuntimeError) as error:
        raise CliError(f"cannot open the platform in {where}: {error}") from None


# --- commands --------------------------------------------------------------------------------------


def _listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket: bind errors (port in use) surface here as an OSError.

    uvicorn binds by itself otherwise, and reports a failure by logging and exiting; binding
    first lets the CLI say it in one line and print the real port when `--port 0` asks for any.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        if os.name != "nt":  # on Windows SO_REUSEADDR would let two servers share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def _url(host: str, port: int) -> str:
    """The URL a client on this machine uses: a wildcard address is reached via loopback."""
    shown = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def _cmd_dev(args: argparse.Namespace) -> int:
    from .platform import PlatformApp

    platform = _open_platform(args.policy, args.data)
    try:
        try:
            import uvicorn
        except ImportError:
            raise CliError(f"`{PROG} dev` needs uvicorn: {_INSTALL_HINT}") from None
        try:
            sock = _listen(args.host, args.port)
        except OSError as error:
            reason = error.strerror or str(error)
            raise CliError(f"cannot listen on {args.host}:{args.port}: {reason}") from None
        try:
            port = int(sock.getsockname()[1])
            url = _url(args.host, port)
            policy = _policy_file(args.policy) or "built-in"
            data = _data_dir(args.data) if args.data != ":memory:" else args.data
            _write(
                f"Tracengent platform on {url} (policy: {policy}, data: {data})"
                f" — point an SDK at it: TRACENGENT_URL={url}",
                sys.stdout,
            )
            config = uvicorn.Config(
                PlatformApp(platform), host=args.host, port=port, log_level="info"
            )
            uvicorn.Server(config).run(sockets=[sock])
        finally:
            sock.close()
    finally:
        platform.store.close()
    return 0


def _cmd_traces(args: argparse.Namespace) -> int:
    from .platform import render_traces

    with closing(_open_store(args.data)) as store:
        _write(render_traces(store.traces(args.last)), sys.stdout)
    return 0


def _cmd_trace(args: argparse.Namespace) -> int:
    from .platform import render_timeline

    with closing(_open_store(args.data)) as store:
        try:
            text = render_timeline(store, args.trace_id)
        except KeyError:
            raise CliError(f"no trace {args.trace_id} in {_data_dir(args.data)}") from None
        _write(text, sys.stdout)
    return 0


def _cmd_approvals(args: argparse.Namespace) -> int:
    from .platform import render_approvals

    with closing(_open_store(args.data)) as store:
        status = None if args.all else "pending"
        empty = "no approvals" if args.all else "no pending approvals"
        _write(render_approvals(store.approvals(status), empty=empty), sys.stdout)
    return 0


def _decide(args: argparse.Namespace, approved: bool) -> int:
    from .platform import format_amount

    with closing(_open_store(args.data)) as store:
        try:
            approval = store.decide_approval(args.approval_id, approved)
        except KeyError:
            raise CliError(f"no approval {args.approval_id}") from None
        except ValueError as error:  # already decided or expired
            raise CliError(str(error)) from None
    context = approval.context if isinstance(approval.context, dict) else {}
    amount = format_amount(context.get("amount"), context.get("currency"))
    what = " ".join(part for part in (approval.permission, amount) if part)
    trace = f", trace {approval.trace_id}" if approval.trace_id else ""
    _write(
        f"{approval.status} {approval.approval_id}: {what} (agent {approval.agent_id}{trace})",
        sys.stdout,
    )
    return 0


def _cmd_approve(args: argparse.Namespace) -> int:
    return _decide(args, approved=True)


def _cmd_deny(args: argparse.Namespace) -> int:
    return _decide(args, approved=False)


def _current_user() -> str:
    try:
        return getpass.getuser() or "local-user"
    except (OSError, KeyError, ImportError):  # no login name in a bare container
        return "local-user"


def _cmd_grant(args: argparse.Namespace) -> int:
    from .platform import covers_all

    platform = _open_platform(args.policy, args.data)
    try:
        agent = platform.policy.agent(args.agent)
        if agent is None:
            raise CliError(f"unknown agent {args.agent!r}: it is not in the policy")
        acting_for = args.acting_for or _current_user()
        grant_id, token = platform.grant(
            args.agent,
            args.permissions,
            acting_for=acting_for,
            max_amount=args.max_amount,
            ttl_s=args.ttl,
        )
    finally:
        platform.store.close()
    _write(token, sys.stdout)  # stdout is only the token: TOKEN=$(tracengent grant …)
    limit = "" if args.max_amount is None else f", max amount {args.max_amount:g}"
    _write(
        f"grant {grant_id}: {args.agent} acting for {acting_for}, {' '.join(args.permissions)}"
        f"{limit}, expires in {args.ttl}s (revoke with: {PROG} revoke {grant_id})",
        sys.stderr,
    )
    # A grant can only narrow what the agent holds; say so now rather than at the first refusal.
    wider = covers_all(tuple(agent.permissions), args.permissions)
    if wider is not None:
        _write(
            f"{PROG}: warning: the policy does not grant {wider!r} to {args.agent}, so this grant"
            " cannot authorize it",
            sys.stderr,
        )
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    with closing(_open_store(args.data)) as store:
        try:
            revoked = store.revoke_grant(args.grant_id)
        except KeyError:
            raise CliError(f"no grant {args.grant_id}") from None
    children = revoked[1:]
    also = (
        f" and {len(children)} grant(s) delegated from it: {', '.join(children)}"
        if children
        else ""
    )
    _write(f"revoked {revoked[0]}{also}", sys.stdout)
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "dev": _cmd_dev,
    "traces": _cmd_traces,
    "trace": _cmd_trace,
    "approvals": _cmd_approvals,
    "approve": _cmd_approve,
    "deny": _cmd_deny,
    "grant": _cmd_grant,
    "revoke": _cmd_revoke,
}


# --- arguments -------------------------------------------------------------------------------------


def _argument(
    convert: Callable[[str], N], noun: str, valid: Callable[[N], bool], invalid: str
) -> Callable[[str], N]:
    """An argparse `type=`: `convert(text)`, refused saying why when it is not `noun` or not
    `valid` (`invalid` says what it is not)."""

    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"{text} is not {invalid}")
        return value

    return parse


_positive_int = _argument(int, "a whole number", lambda v: v > 0, "positive")
_port = _argument(
    int, "a port number", lambda v: 0 <= v <= 65535, "a port (0-65535; 0 picks a free one)"
)
_amount = _argument(
    float, "a number", lambda v: math.isfinite(v) and v >= 0, "a non-negative amount"
)


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    data = argparse.ArgumentParser(add_help=False)
    data.add_argument(
        "--data",
        metavar="DIR",
        help="the platform's data dir (default: $TRACENGENT_DATA or ~/.tracengent)",
    )
    policy = argparse.ArgumentParser(add_help=False)
    policy.add_argument(
        "--policy",
        metavar="FILE",
        help="policy file (default: $TRACENGENT_POLICY, else the built-in demo policy)",
    )

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The local Tracengent platform: run it, inspect traces, decide approvals, delegate.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    dev = sub.add_parser(
        "dev",
        parents=[policy, data],
        help="serve the platform over HTTP (for SDKs in any language)",
        description="Serve the platform over HTTP under uvicorn; stop with Ctrl-C.",
    )
    dev.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default: {DEFAULT_HOST})"
    )
    dev.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"port to listen on (default: {DEFAULT_PORT}; 0 picks a free one)",
    )

    traces = sub.add_parser("traces", parents=[data], help="list the latest traces")
    traces.add_argument(
        "--last",
        type=_positive_int,
        default=DEFAULT_LAST,
        metavar="N",
        help=f"how many, newest first (default: {DEFAULT_LAST})",
    )

    trace = sub.add_parser("trace", parents=[data], help="show one trace's timeline")
    trace.add_argument("trace_id", metavar="TRACE_ID")

    approvals = sub.add_parser("approvals", parents=[data], help="list pending approvals")
    approvals.add_argument("--all", action="store_true", help="also decided and expired ones")

    for name, verb in (("approve", "approve"), ("deny", "deny")):
        decide = sub.add_parser(name, parents=[data], help=f"{verb} a pending approval")
        decide.add_argument("approval_id", metavar="ID")

    grant = sub.add_parser(
        "grant",
        parents=[policy, data],
        help="delegate permissions to an agent; prints the delegated token",
        description="Mint a delegated grant. The token goes to stdout (alone), the grant id to stderr.",
    )
    grant.add_argument("agent", metavar="AGENT", help="the agent the grant is for (in the policy)")
    grant.add_argument("permissions", metavar="PERMISSION", nargs="+", help="e.g. payments:refund")
    grant.add_argument(
        "--max-amount",
        type=_amount,
        metavar="N",
        help="largest amount per action, in the policy currency",
    )
    grant.add_argument(
        "--ttl",
        type=_positive_int,
        default=DEFAULT_TTL_S,
        metavar="S",
        help=f"lifetime in seconds (default: {DEFAULT_TTL_S})",
    )
    grant.add_argument(
        "--acting-for", metavar="USER", help="the user delegating (default: your login)"
    )

    revoke = sub.add_parser(
        "revoke", parents=[data], help="revoke a grant and all delegated from it"
    )
    revoke.add_argument("grant_id", metavar="GRANT_ID")
    return parser


# --- entry point -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 error, 2 usage, 130 interrupted)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, usage errors: argparse already printed
        return stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 2
    if args.command is None:
        parser.print_usage(sys.stderr)
        _write(f"{PROG}: error: a command is required (see {PROG} --help)", sys.stderr)
        return 2
    try:
        return _COMMANDS[args.command](args)
    except CliError as error:
        _error(str(error))
        return 1
    except KeyboardInterrupt:  # Ctrl-C, also re-raised by uvicorn after a graceful shutdown
        return 130
    except ImportError as error:  # the platform's own dependencies are an optional extra
        _error(f"the local platform is not installed: {_INSTALL_HINT} ({error})")
        return 1
    except BrokenPipeError:  # `tracengent traces | head`: the reader left, nothing to report
        with contextlib.suppress(OSError, ValueError):  # no flush error at interpreter exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as error:  # the promise is one line, never a traceback
        if os.environ.get("TRACENGENT_DEBUG"):
            raise
        _error(f"unexpected {type(error).__name__}: {error} (TRACENGENT_DEBUG=1 shows where)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
