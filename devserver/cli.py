"""The `livelambda` command line. Each subcommand's work lives in its own module, imported lazily
so that `livelambda --help` stays fast."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _add_cloud(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cloud", help="run the AppSync Events + Lambda emulators on loopback (no AWS account)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8790)
    p.add_argument("--api-key", help="API key clients must present (default: a fresh random key)")
    p.add_argument(
        "--iam-credentials",
        action="append",
        default=[],
        metavar="AKID:SECRET[:TOKEN]",
        help="accept SigV4 (AWS_IAM) requests signed with these credentials; repeatable",
    )
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--ka-interval", type=float, default=60.0, help="seconds between keep-alive frames")
    p.add_argument("--app", type=Path, help="app directory whose functions the Lambda emulator serves")
    p.add_argument(
        "--ready-file",
        type=Path,
        help="once listening, write the endpoints, port and API key to this file as JSON (for tests)",
    )


def _run_cloud(args: argparse.Namespace) -> int:
    from devserver.cloud.options import CloudOptions, IamCredentials

    try:
        creds = tuple(IamCredentials.parse(c) for c in args.iam_credentials)
    except ValueError as exc:
        print(f"livelambda cloud: {exc}", file=sys.stderr)
        return 2
    from devserver.cloud.server import serve

    options = CloudOptions(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        iam_credentials=creds,
        region=args.region,
        ka_interval_s=args.ka_interval,
        app_dir=args.app,
        extra={"ready_file": str(args.ready_file)} if args.ready_file else {},
    )
    return serve(options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livelambda", description="Run your deployed AWS Lambda functions' code on this machine, live."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_cloud(sub)
    return parser


_RUNNERS = {"cloud": _run_cloud}


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    raise SystemExit(_RUNNERS[args.command](args))
