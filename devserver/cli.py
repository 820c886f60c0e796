"""The `livelambda` command line. Each subcommand's work lives in its own module, imported lazily
so that `livelambda --help` stays fast."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from devserver.commands.usage import USAGE_EXIT, at_least_one, port_number, positive_seconds


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line saying what to do (argparse would print the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_EXIT, f"{self.prog}: {message}; see `{self.prog} --help`\n")


def _add_cloud(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cloud", help="run the AppSync Events + Lambda emulators on loopback (no AWS account)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=port_number, default=8790, help="default: 8790; 0: any free port")
    p.add_argument("--api-key", help="API key clients must present (default: a fresh random key)")
    p.add_argument(
        "--iam-credentials",
        action="append",
        default=[],
        metavar="AKID:SECRET[:TOKEN]",
        help="accept SigV4 (AWS_IAM) requests signed with these credentials; repeatable",
    )
    p.add_argument("--region", default="us-east-1")
    p.add_argument(
        "--ka-interval", type=positive_seconds, default=60.0, help="seconds between keep-alive frames"
    )
    p.add_argument(
        "--app",
        type=Path,
        help="app directory whose functions the Lambda emulator serves (default: ., when it has a config)",
    )
    p.add_argument(
        "--live",
        action="store_true",
        help="run the app's functions in live mode: each invocation goes to `livelambda dev`",
    )
    p.add_argument(
        "--ready-file",
        type=Path,
        help="once listening, write the endpoints, port and API key to this file as JSON (for tests)",
    )
    p.add_argument(
        "--concurrency",
        type=at_least_one,
        metavar="N",
        help="sandboxes a function may run at once (default: 10)",
    )
    p.add_argument("--tls-cert", type=Path, metavar="FILE", help="serve https/wss with this PEM certificate")
    p.add_argument("--tls-key", type=Path, metavar="FILE", help="the certificate's PEM private key")
    p.add_argument(
        "--live-auth",
        choices=("api-key", "iam"),
        default="api-key",
        help="how the live stubs sign (iam: with the first --iam-credentials, as `aws up --auth iam`)",
    )
    _add_cloud_faults(p)


def _add_cloud_faults(p: argparse.ArgumentParser) -> None:
    """The fault controls of devserver/cloud/faults.py as options: in force from the start, and still
    adjustable while it runs (POST /_livelambda/faults takes the same controls as JSON)."""
    f = p.add_argument_group(
        "fault injection",
        "Misbehave as AppSync does on a bad day, from the start; change or clear it while running with "
        "POST /_livelambda/faults (JSON, see devserver/cloud/faults.py); GET it to see what is in force.",
    )
    f.add_argument(
        "--refuse-connections-for", type=positive_seconds, metavar="S",
        help="refuse new WebSocket connections (HTTP 503) for the first S seconds",
    )  # fmt: skip
    f.add_argument(
        "--stall-connections-for", type=positive_seconds, metavar="S",
        help="leave new WebSocket handshakes unanswered for the first S seconds (a black hole: a "
        "function in a VPC without NAT)",
    )  # fmt: skip
    f.add_argument(
        "--flap-connections", type=_accept_refuse, metavar="ACCEPT_S:REFUSE_S",
        help="flap: refuse new connections for REFUSE_S seconds (dropping the open ones as it starts), "
        "accept them for ACCEPT_S, and so on, refusing first",
    )  # fmt: skip
    f.add_argument(
        "--flap-jitter", type=float, metavar="FRACTION",
        help="vary each flapping window's length by up to +-FRACTION (0 to 0.9; default 0)",
    )  # fmt: skip
    f.add_argument("--flap-for", type=positive_seconds, metavar="S", help="stop flapping after S seconds")
    f.add_argument("--flap-seed", type=int, metavar="N", help="the same flapping windows on every run")
    f.add_argument(
        "--flap-keep-connections", action="store_true",
        help="flapping refuses new connections only, and leaves open ones alone",
    )  # fmt: skip
    f.add_argument(
        "--delay-delivery", type=float, metavar="MS", help="hold every data frame MS milliseconds"
    )
    f.add_argument("--duplicate-delivery", action="store_true", help="send every data frame twice")
    f.add_argument(
        "--drop-after-frames", type=int, metavar="N",
        help="drop the connection that sends the N-th data frame (once; 0: lose the next frame with it)",
    )  # fmt: skip
    f.add_argument(
        "--abrupt-drops", action="store_true",
        help="the drops above tear the TCP connection down without a close frame (the client sees 1006)",
    )  # fmt: skip


def _accept_refuse(text: str) -> tuple[float, float]:
    """argparse type of --flap-connections: ACCEPT_S:REFUSE_S, two numbers of seconds > 0."""
    accept, _, refuse = text.partition(":")
    try:
        return positive_seconds(accept), positive_seconds(refuse)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not ACCEPT_S:REFUSE_S, e.g. 2:1.5") from None


def _fault_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The faults.py request the fault options make (empty when none is given)."""
    spec: dict[str, Any] = {}
    if args.refuse_connections_for is not None:
        spec["refuse_connections_for_s"] = args.refuse_connections_for
    if args.stall_connections_for is not None:
        spec["stall_connections_for_s"] = args.stall_connections_for
    if args.flap_connections is not None:
        accept_s, refuse_s = args.flap_connections
        flap: dict[str, Any] = {"accept_s": accept_s, "refuse_s": refuse_s}
        if args.flap_jitter is not None:
            flap["jitter"] = args.flap_jitter
        if args.flap_for is not None:
            flap["for_s"] = args.flap_for
        if args.flap_seed is not None:
            flap["seed"] = args.flap_seed
        if args.flap_keep_connections:
            flap["drop"] = False
        spec["flap_connections"] = flap
    else:
        given = [n for n, v in (("--flap-jitter", args.flap_jitter), ("--flap-for", args.flap_for),
                                ("--flap-seed", args.flap_seed)) if v is not None]  # fmt: skip
        if given or args.flap_keep_connections:
            from devserver.commands.usage import UsageError

            raise UsageError(f"{', '.join(given) or '--flap-keep-connections'} needs --flap-connections")
    if args.delay_delivery is not None:
        spec["delay_delivery_ms"] = args.delay_delivery
    if args.duplicate_delivery:
        spec["duplicate_delivery"] = True
    if args.drop_after_frames is not None:
        spec["drop_after_frames"] = args.drop_after_frames
    if args.abrupt_drops:
        spec["abrupt"] = True
    return spec


def _run_cloud(args: argparse.Namespace) -> int:
    from devserver.cloud.options import CloudOptions, IamCredentials
    from devserver.commands.usage import UsageError, check_app_dir, check_can_listen
    from devserver.config import find_config, load_config

    try:
        creds = tuple(IamCredentials.parse(c) for c in args.iam_credentials)
    except ValueError as exc:
        print(f"livelambda cloud: {exc}", file=sys.stderr)
        return 2
    if args.app is None and find_config(Path.cwd()) is not None:
        args.app = Path.cwd()  # run in an app's directory: that app
    if args.app is not None:
        check_app_dir(args.app, "--app")
        load_config(args.app)  # a mistake in it is one line now, before a layer is built or a port bound
    elif args.live:
        raise UsageError(
            "--live needs an app: run it in the app's directory (the one holding livelambda.toml) "
            "or pass --app DIR"
        )
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    for flag, tls_file in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if tls_file is not None and not tls_file.is_file():
            raise UsageError(f"{flag} {tls_file}: no such file")
    if args.live_auth == "iam" and not creds:
        raise UsageError("--live-auth iam needs --iam-credentials (the stubs sign with the first)")
    faults = _fault_spec(args)
    if faults:
        from devserver.cloud.faults import Faults, FaultSpecError

        try:
            Faults().apply(dict(faults))  # a bad value is a usage error now, not a crash on start
        except FaultSpecError as exc:
            raise UsageError(f"fault injection: {exc}") from None
    check_can_listen(args.host, args.port, port_flag="--port", host_flag="--host")
    from devserver.cloud.server import serve

    ready_file = args.ready_file
    if ready_file is None and args.app is not None:
        from devserver.live.session import cloud_file, state_dir

        state_dir(args.app.resolve())
        ready_file = cloud_file(args.app.resolve())
    extra = {"ready_file": str(ready_file)} if ready_file else {}
    if args.concurrency is not None:
        extra["lambda_concurrency"] = str(args.concurrency)
    options = CloudOptions(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        iam_credentials=creds,
        region=args.region,
        ka_interval_s=args.ka_interval,
        app_dir=args.app,
        live=args.live,
        live_auth=args.live_auth.replace("-", "_"),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        faults=faults,
        extra=extra,
    )
    return serve(options)


def _add_dev(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dev", help="run the dev server: live invocations run your code here")
    p.add_argument("app", nargs="?", type=Path, default=Path("."), help="the app directory (default: .)")
    p.add_argument("--cloud", action="store_true", help="also start `livelambda cloud --live` for the app")
    p.add_argument("--cloud-port", type=port_number, default=8790)
    p.add_argument(
        "--cloud-concurrency", type=at_least_one, metavar="N", help="`livelambda cloud --concurrency N`"
    )
    p.add_argument("--port", type=port_number, help="dashboard port (default: the config's, 8791)")
    p.add_argument("--ready-file", type=Path, help="once listening, write the dashboard URL here as JSON")
    p.add_argument(
        "--aws",
        action="store_true",
        help="attach the app's deployed functions (`livelambda aws up`) now, and put them back on exit",
    )
    p.add_argument("--auth", choices=("iam", "api-key"), default="iam", help="with --aws: as `aws up --auth`")
    p.add_argument(
        "--vpc", choices=("refuse", "detach", "keep"), default="refuse", help="with --aws: as `aws up --vpc`"
    )
    p.add_argument("--timeout", type=int, metavar="SECONDS", help="with --aws: as `aws up --timeout`")
    p.add_argument("--profile", help="with --aws: the AWS profile")
    p.add_argument("--region", help="with --aws: the AWS region (default: the config's)")


def _run_dev(args: argparse.Namespace) -> int:
    from devserver.commands.dev import DevCommand, run

    if args.aws and args.cloud:
        print("livelambda dev: --aws and --cloud exclude each other; pick one", file=sys.stderr)
        return 2
    aws_options = {"auth": args.auth.replace("-", "_"), "vpc": args.vpc, "timeout": args.timeout}
    return run(
        DevCommand(
            args.app.resolve(),
            cloud=args.cloud,
            cloud_port=args.cloud_port,
            cloud_concurrency=args.cloud_concurrency,
            port=args.port,
            ready_file=args.ready_file,
            aws=args.aws,
            aws_options=aws_options,
            profile=args.profile,
            region=args.region,
        )
    )


def _add_invoke(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("invoke", help="invoke a function through the Lambda Invoke API and print the result")
    p.add_argument("function")
    p.add_argument("payload", nargs="?", help="JSON text, @file, or - for stdin (default: {})")
    p.add_argument("--app", type=Path, help="app directory (finds its running `livelambda cloud`)")
    p.add_argument("--endpoint-url", help="Invoke API endpoint (default: the app's cloud, else :8790)")
    p.add_argument("--region", default="us-east-1")


def _run_invoke(args: argparse.Namespace) -> int:
    from devserver.commands.invoke import run
    from devserver.commands.usage import check_app_dir

    if args.app is not None:
        check_app_dir(args.app, "--app")
    return run(args.function, args.payload, app_dir=args.app, url=args.endpoint_url, region=args.region)


# --- livelambda stub build (the stub's Lambda layer; devserver/commands/stub.py) ---
def _add_stub(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stub", help="the stub that runs in Lambda: build its layer zip")
    stub_sub = p.add_subparsers(dest="stub_command", required=True)
    b = stub_sub.add_parser("build", help="build the stub's Lambda layer zip (deterministic) and its sha256")
    b.add_argument("--output", type=Path, help="zip to write (default: .livelambda/stub-layer.zip here)")
    b.add_argument("--no-pyc", action="store_true", help="ship sources only, no bytecode for this Python")


def _run_stub(args: argparse.Namespace) -> int:
    from devserver.commands.stub import run_build

    return run_build(args.output, precompile=not args.no_pyc)


# --- end livelambda stub build ---


# --- livelambda aws up | down | status (devserver/commands/aws.py, devserver/aws/) ---
def _aws_common(p: argparse.ArgumentParser, *, app_default: Path | None) -> None:
    p.add_argument(
        "--app", type=Path, default=app_default, help="the app directory (default: ., when it has a config)"
    )
    p.add_argument("--profile", help="AWS profile (default: the standard chain: env, AWS_PROFILE, SSO)")
    p.add_argument(
        "--region", help="AWS region (default: the config's region, else AWS_REGION / the profile's)"
    )


def _add_aws(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("aws", help="attach deployed functions to live mode, put them back, see what is live")
    aws_sub = p.add_subparsers(dest="aws_command", required=True)
    up = aws_sub.add_parser("up", help="switch the app's deployed functions to live mode")
    _aws_common(up, app_default=Path("."))
    up.add_argument(
        "--auth",
        choices=("iam", "api-key"),
        default="iam",
        help="how the stub and dev server sign in to AppSync (default: iam, no API key exists at all)",
    )
    up.add_argument(
        "--vpc",
        choices=("refuse", "detach", "keep"),
        default="refuse",
        help="a function in a VPC whose subnets have no NAT route: refuse it (default), detach it "
        "from the VPC while live, or keep it as it is",
    )
    up.add_argument(
        "--timeout", type=int, metavar="SECONDS", help="raise the functions' timeout to this while live"
    )
    up.add_argument("--take-over", action="store_true", help="take over functions live for another session")
    up.add_argument("--force", action="store_true", help="switch functions whose names look like production")
    which = up.add_mutually_exclusive_group()
    which.add_argument(
        "--stack", metavar="NAME", help="every function of this CloudFormation stack (nested too)"
    )
    which.add_argument("--tag", metavar="KEY=VALUE", help="every function with this tag")
    which.add_argument(
        "--function",
        action="append",
        default=[],
        metavar="NAME",
        dest="functions",
        help="only this function of the config; repeatable",
    )
    down = aws_sub.add_parser("down", help="put the session's functions back exactly as they were")
    _aws_common(down, app_default=None)
    down.add_argument(
        "--session", help="the live session to end (default: the app's); see `livelambda aws status`"
    )
    down.add_argument(
        "--function",
        action="append",
        default=[],
        metavar="NAME",
        dest="functions",
        help="only this deployed function; repeatable",
    )
    down.add_argument(
        "--force", action="store_true", help="restore functions changed while live all the same"
    )
    down.add_argument(
        "--skip-missing-layers",
        action="store_true",
        help="restore without original layer versions that have been deleted since",
    )
    down.add_argument(
        "--purge",
        action="store_true",
        help="also delete the shared AppSync API, its alarm and the stub layer, if no session uses them",
    )
    status = aws_sub.add_parser(
        "status", help="which functions are live, for whom, and the API's connections"
    )
    _aws_common(status, app_default=None)


def _run_aws(args: argparse.Namespace) -> int:
    from devserver.commands import aws

    common = {"profile": args.profile, "region": args.region}
    if args.aws_command == "up":
        return aws.run_up(
            args.app,
            auth=args.auth.replace("-", "_"),
            vpc=args.vpc,
            timeout=args.timeout,
            take_over=args.take_over,
            force=args.force,
            stack=args.stack,
            tag=args.tag,
            functions=args.functions,
            **common,
        )
    if args.aws_command == "down":
        return aws.run_down(
            args.app,
            session_id=args.session,
            functions=args.functions,
            force=args.force,
            skip_missing_layers=args.skip_missing_layers,
            purge=args.purge,
            **common,
        )
    return aws.run_status(args.app, **common)


# --- end livelambda aws ---


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="livelambda", description="Run your deployed AWS Lambda functions' code on this machine, live."
    )
    from devserver.commands.version import VersionAction

    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_cloud(sub)
    _add_dev(sub)
    _add_invoke(sub)
    _add_stub(sub)  # livelambda stub build
    _add_aws(sub)
    return parser


_RUNNERS = {"cloud": _run_cloud, "dev": _run_dev, "invoke": _run_invoke, "stub": _run_stub, "aws": _run_aws}


def main(argv: Sequence[str] | None = None) -> None:
    from stub_runtime.errors import LivelambdaError

    args = build_parser().parse_args(argv)
    try:
        code = _RUNNERS[args.command](args)
    except LivelambdaError as exc:  # a bad config and the like: the message says what to do
        print(f"livelambda {args.command}: {exc}", file=sys.stderr)
        code = 2
    raise SystemExit(code)
