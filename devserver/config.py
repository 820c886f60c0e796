"""The app's configuration: one file at the app root, `livelambda.toml` or `[tool.livelambda]` in the
app's `pyproject.toml`.

```toml
app = "hello"                 # default: the directory's name
stage = "dev"
region = "us-east-1"

[endpoint]                    # where the AppSync Events API is
mode = "local"                # "local": `livelambda cloud` (default); "aws": a real AppSync Events API
http_url = "https://xxxx.appsync-api.us-east-1.amazonaws.com/event"
realtime_url = "wss://xxxx.appsync-realtime-api.us-east-1.amazonaws.com/event/realtime"
auth = "api_key"              # or "iam"
api_key = "da2-..."

[dashboard]
port = 8791
keep = 500                    # invocations kept in memory

[watch]                       # which saves below a function's source reload it (globs)
include = ["*.py", "*.json", "templates/*.html"]   # default: DEFAULT_WATCH_INCLUDE (code, data files)
exclude = ["*.log", "*.db", "cache"]               # default: DEFAULT_WATCH_EXCLUDE (logs, SQLite, .cache)

[functions.hello]
handler = "hello.handler"     # module.function, required
source = "."                  # directory of the code, relative to the app root
python = ".venv"              # interpreter or virtualenv; default: the app's own, .livelambda/venv
timeout = 3                   # seconds, at most 900
memory = 128                  # MB
environment = { GREETING = "hi" }
```

Every error names the file and the key, and says what to do.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import tomllib

from stub_runtime.errors import CallerFault

CONFIG_FILE = "livelambda.toml"
PYPROJECT_FILE = "pyproject.toml"
# The virtualenv of functions without a `python` key: Lambda's runtime packages + what the app
# declares, made before workers start (devserver/runtime/app_env.py).
APP_ENV_DIR = Path(".livelambda") / "venv"

DEFAULT_LOCAL_HTTP_URL = "http://127.0.0.1:8790/event"
DEFAULT_DASHBOARD_PORT = 8791
DEFAULT_KEEP = 500
DEFAULT_TIMEOUT_S = 3.0
MAX_TIMEOUT_S = 900.0
DEFAULT_MEMORY_MB = 128
MIN_MEMORY_MB = 128
MAX_MEMORY_MB = 10_240

_TOP_KEYS = ("app", "stage", "region", "endpoint", "dashboard", "aws", "watch", "functions")
_WATCH_KEYS = ("include", "exclude")
# What a save below a function's source must match to reload it (globs; see devserver/reload/watch_filter.py):
# the code and the data files shipped with it, not what the code itself writes there.
DEFAULT_WATCH_INCLUDE = (
    "*.py", "*.json", "*.yaml", "*.yml", "*.toml", "*.ini", "*.cfg", "*.env", "*.txt", "*.csv",
    "*.tsv", "*.xml", "*.html", "*.htm", "*.jinja", "*.jinja2", "*.j2", "*.sql", "*.graphql", "*.so",
)  # fmt: skip
DEFAULT_WATCH_EXCLUDE = (
    "*.log", "*.log.[0-9]*", "*.db", "*.sqlite*", "*-journal", "*-wal", "*-shm", ".cache",
)  # fmt: skip
_AWS_KEYS = ("production_stages",)
DEFAULT_PRODUCTION_STAGES = ("prod", "production", "prd")
_ENDPOINT_KEYS = ("mode", "http_url", "realtime_url", "auth", "api_key")
_DASHBOARD_KEYS = ("port", "keep")
_FUNCTION_KEYS = ("handler", "source", "python", "timeout", "memory", "environment", "deployed")

_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?$")
_FUNCTION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DEPLOYED_RE = re.compile(
    r"^(?:[A-Za-z0-9_-]{1,64}|arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]{1,64})$"
)
_REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d+$")
_HANDLER_RE = re.compile(r"^(?:[A-Za-z_]\w*[./])*[A-Za-z_]\w*\.[A-Za-z_]\w*$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# Lambda refuses to let a function set these; so do we.
RESERVED_ENV = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)


class ConfigError(CallerFault):
    """The app's configuration file is missing or wrong. The message names the file and the key."""

    error_type = "Livelambda.ConfigError"


@dataclass(frozen=True)
class EndpointConfig:
    mode: Literal["local", "aws"] = "local"
    http_url: str = DEFAULT_LOCAL_HTTP_URL
    realtime_url: str = "ws://127.0.0.1:8790/event/realtime"
    auth: Literal["api_key", "iam"] = "api_key"
    api_key: str | None = None


@dataclass(frozen=True)
class DashboardConfig:
    port: int = DEFAULT_DASHBOARD_PORT
    keep: int = DEFAULT_KEEP


@dataclass(frozen=True)
class AwsConfig:
    # `aws up` refuses a function whose name, stage or stack has one of these words, unless --force
    production_stages: tuple[str, ...] = DEFAULT_PRODUCTION_STAGES


@dataclass(frozen=True)
class WatchConfig:
    include: tuple[str, ...] = DEFAULT_WATCH_INCLUDE
    exclude: tuple[str, ...] = DEFAULT_WATCH_EXCLUDE


@dataclass(frozen=True)
class FunctionConfig:
    name: str
    handler: str
    source: Path  # absolute
    python: Path  # absolute path of the interpreter
    timeout: float = DEFAULT_TIMEOUT_S
    memory: int = DEFAULT_MEMORY_MB
    environment: Mapping[str, str] = field(default_factory=dict)
    deployed: str | None = None  # the deployed function's name or ARN, when not this function's name
    app_env: Path | None = None  # no `python` key: the app root whose APP_ENV_DIR `python` is in


@dataclass(frozen=True)
class AppConfig:
    app: str
    root: Path  # the app directory, absolute
    path: Path  # the file the configuration came from
    stage: str = "dev"
    region: str | None = None
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    aws: AwsConfig = field(default_factory=AwsConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    functions: Mapping[str, FunctionConfig] = field(default_factory=dict)

    def deployed_name(self, function: FunctionConfig) -> str:
        """The name of the deployed Lambda function that `function` runs (its `deployed` name or ARN's
        name, else its own name)."""
        return deployed_function_name(function.deployed) if function.deployed else function.name

    def function_for(self, deployed: str) -> FunctionConfig | None:
        """The local function that runs the deployed function named `deployed` (a name or an ARN):
        its `deployed` name, its own name, or its name after the `<app>-<stage>-` prefix."""
        name = deployed_function_name(deployed)
        for function in self.functions.values():
            if function.deployed and deployed_function_name(function.deployed) == name:
                return function
        if name in self.functions:
            return self.functions[name]
        prefix = f"{self.app}-{self.stage}-"
        if name.startswith(prefix):
            return self.functions.get(name[len(prefix) :])
        return None


def deployed_function_name(name_or_arn: str) -> str:
    """`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]` -> NAME; a plain name as it is."""
    if name_or_arn.startswith("arn:"):
        parts = name_or_arn.split(":")
        if len(parts) >= 7 and parts[5] == "function":
            return parts[6]
    return name_or_arn


def find_config(app_dir: Path) -> Path | None:
    """The file holding the app's configuration, or None when the directory has none."""
    toml_path = app_dir / CONFIG_FILE
    if toml_path.is_file():
        return toml_path
    pyproject = app_dir / PYPROJECT_FILE
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
            return None
        if isinstance(data.get("tool"), dict) and "livelambda" in data["tool"]:
            return pyproject
    return None


def load_config(app_dir: Path) -> AppConfig:
    """Read and check the configuration of the app in `app_dir`. Raises ConfigError."""
    root = Path(app_dir).resolve()
    if not root.is_dir():
        raise ConfigError(f"{app_dir}: no such directory; pass the directory that holds {CONFIG_FILE}")
    toml_path = root / CONFIG_FILE
    pyproject = root / PYPROJECT_FILE
    in_pyproject: dict[str, Any] | None = None
    if pyproject.is_file():
        doc = _read_toml(pyproject, PYPROJECT_FILE)
        tool = doc.get("tool")
        if isinstance(tool, dict) and "livelambda" in tool:
            in_pyproject = tool["livelambda"]
    if toml_path.is_file():
        if in_pyproject is not None:
            raise ConfigError(
                f"{CONFIG_FILE}: this app is also configured by [tool.livelambda] in {PYPROJECT_FILE}; "
                "keep one of the two"
            )
        data = _read_toml(toml_path, CONFIG_FILE)
        return _Parser(CONFIG_FILE, "", root, toml_path).app(data)
    if in_pyproject is not None:
        if not isinstance(in_pyproject, dict):
            raise ConfigError(f"{PYPROJECT_FILE}: tool.livelambda must be a table ([tool.livelambda])")
        return _Parser(PYPROJECT_FILE, "tool.livelambda.", root, pyproject).app(in_pyproject)
    raise ConfigError(
        f"{root}: no {CONFIG_FILE} and no [tool.livelambda] in {PYPROJECT_FILE}; create {CONFIG_FILE} with "
        'at least one function, e.g.\n\n[functions.hello]\nhandler = "hello.handler"\n'
    )


def _read_toml(path: Path, label: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label}: cannot read it: {exc}") from None


class _Parser:
    def __init__(self, label: str, prefix: str, root: Path, path: Path) -> None:
        self.label = label
        self.prefix = prefix
        self.root = root
        self.path = path

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.label}: {self.prefix}{key} {message}")

    def check_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for key in table:
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else "known keys: " + ", ".join(allowed)
            raise self.fail(f"{where}{key}", f"is not a known key; {hint}")

    def table(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table ([{self.prefix}{key}]), got {_show(value)}")
        return value

    def string(self, data: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str | None:
        value = data.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self.fail(f"{where}{key}", f"must be a string, got {_show(value)}")
        return value

    def app(self, data: Mapping[str, Any]) -> AppConfig:
        self.check_keys(data, _TOP_KEYS, "")
        app = self.string(data, "app", "")
        if app is None:
            app = re.sub(r"[^A-Za-z0-9-]+", "-", self.root.name).strip("-") or "app"
        elif not _NAME_RE.match(app):
            raise self.fail(
                "app", f"must be 1-50 letters, digits or dashes (it names AppSync channels), got {app!r}"
            )
        stage = self.string(data, "stage", "", "dev")
        assert stage is not None
        if not _NAME_RE.match(stage):
            raise self.fail(
                "stage", f"must be 1-50 letters, digits or dashes (it names AppSync channels), got {stage!r}"
            )
        region = self.string(data, "region", "")
        if region is not None and not _REGION_RE.match(region):
            raise self.fail("region", f"must be an AWS region such as 'us-east-1', got {region!r}")
        functions_table = self.table(data, "functions")
        functions = {name: self.function(name, spec) for name, spec in functions_table.items()}
        if not functions:
            raise self.fail(
                "functions",
                'must define at least one function, e.g. [functions.hello] with handler = "hello.handler"',
            )
        return AppConfig(
            app=app,
            root=self.root,
            path=self.path,
            stage=stage,
            region=region,
            endpoint=self.endpoint(self.table(data, "endpoint")),
            dashboard=self.dashboard(self.table(data, "dashboard")),
            aws=self.aws(self.table(data, "aws")),
            watch=self.watch(self.table(data, "watch")),
            functions=functions,
        )

    def endpoint(self, data: Mapping[str, Any]) -> EndpointConfig:
        self.check_keys(data, _ENDPOINT_KEYS, "endpoint.")
        http_url = self.string(data, "http_url", "endpoint.")
        mode = self.string(data, "mode", "endpoint.", "aws" if http_url else "local")
        if mode not in ("local", "aws"):
            raise self.fail(
                "endpoint.mode",
                f"must be 'local' (livelambda cloud) or 'aws' (a real AppSync Events API), got {mode!r}",
            )
        if http_url is None:
            if mode == "aws":
                raise self.fail(
                    "endpoint.http_url",
                    "is required with mode = 'aws'; set it to your API's HTTP endpoint, "
                    "e.g. 'https://xxxx.appsync-api.us-east-1.amazonaws.com/event'",
                )
            http_url = DEFAULT_LOCAL_HTTP_URL
        if urlsplit(http_url).scheme not in ("http", "https") or not urlsplit(http_url).netloc:
            raise self.fail("endpoint.http_url", f"must be an http:// or https:// URL, got {http_url!r}")
        realtime_url = self.string(data, "realtime_url", "endpoint.") or _realtime_url_for(http_url)
        if urlsplit(realtime_url).scheme not in ("ws", "wss") or not urlsplit(realtime_url).netloc:
            raise self.fail("endpoint.realtime_url", f"must be a ws:// or wss:// URL, got {realtime_url!r}")
        auth = self.string(data, "auth", "endpoint.", "api_key")
        if auth not in ("api_key", "iam"):
            raise self.fail("endpoint.auth", f"must be 'api_key' or 'iam', got {auth!r}")
        api_key = self.string(data, "api_key", "endpoint.")
        if api_key is not None and auth == "iam":
            raise self.fail("endpoint.api_key", "is not used with auth = 'iam'; remove one of the two")
        return EndpointConfig(
            mode=mode,  # type: ignore[arg-type]
            http_url=http_url,
            realtime_url=realtime_url,
            auth=auth,  # type: ignore[arg-type]
            api_key=api_key,
        )

    def dashboard(self, data: Mapping[str, Any]) -> DashboardConfig:
        self.check_keys(data, _DASHBOARD_KEYS, "dashboard.")
        port = data.get("port", DEFAULT_DASHBOARD_PORT)
        if not _is_int(port) or not 0 <= port <= 65535:
            raise self.fail(
                "dashboard.port", f"must be a port number 0-65535 (0: any free port), got {_show(port)}"
            )
        keep = data.get("keep", DEFAULT_KEEP)
        if not _is_int(keep) or keep < 1:
            raise self.fail(
                "dashboard.keep", f"must be a whole number of invocations >= 1, got {_show(keep)}"
            )
        return DashboardConfig(port=port, keep=keep)

    def aws(self, data: Mapping[str, Any]) -> AwsConfig:
        self.check_keys(data, _AWS_KEYS, "aws.")
        stages = data.get("production_stages", list(DEFAULT_PRODUCTION_STAGES))
        if not isinstance(stages, list) or not all(isinstance(s, str) and s for s in stages):
            raise self.fail(
                "aws.production_stages",
                f'must be a list of words, e.g. ["prod", "live"], got {_show(stages)}',
            )
        return AwsConfig(production_stages=tuple(stages))

    def watch(self, data: Mapping[str, Any]) -> WatchConfig:
        self.check_keys(data, _WATCH_KEYS, "watch.")
        lists: dict[str, tuple[str, ...]] = {}
        for key, default in (("include", DEFAULT_WATCH_INCLUDE), ("exclude", DEFAULT_WATCH_EXCLUDE)):
            value = data.get(key, list(default))
            if not isinstance(value, list) or not all(isinstance(p, str) and p.strip() for p in value):
                raise self.fail(
                    f"watch.{key}",
                    f'must be a list of glob patterns, e.g. ["*.py", "templates/*.html"], got {_show(value)}',
                )
            lists[key] = tuple(p.strip() for p in value)
        return WatchConfig(include=lists["include"], exclude=lists["exclude"])

    def function(self, name: str, data: Any) -> FunctionConfig:
        where = f"functions.{name}."
        if not _FUNCTION_NAME_RE.match(name):
            raise self.fail(
                f"functions.{name}", "is not a valid Lambda function name; use 1-64 letters, digits, - or _"
            )
        if not isinstance(data, dict):
            raise self.fail(f"functions.{name}", f"must be a table ([functions.{name}]), got {_show(data)}")
        self.check_keys(data, _FUNCTION_KEYS, where)
        if "handler" not in data:
            raise self.fail(f"{where}handler", "is required; set it to 'module.function', e.g. 'app.handler'")
        handler = self.string(data, "handler", where)
        assert handler is not None
        if not _HANDLER_RE.match(handler):
            raise self.fail(f"{where}handler", f"must look like 'module.function', got {handler!r}")
        source_text = self.string(data, "source", where, ".")
        assert source_text is not None
        source = (self.root / source_text).resolve()
        if not source.is_dir():
            raise self.fail(
                f"{where}source",
                f"is {source_text!r} but {source} is not a directory; give the code's directory, "
                "relative to the app root",
            )
        return FunctionConfig(
            name=name,
            handler=handler,
            source=source,
            python=self.python(data, where),
            timeout=self.timeout(data, where),
            memory=self.memory(data, where),
            environment=self.environment(data, where),
            deployed=self.deployed(data, where),
            app_env=self.root if data.get("python") is None else None,
        )

    def deployed(self, data: Mapping[str, Any], where: str) -> str | None:
        text = self.string(data, "deployed", where)
        if text is not None and not _DEPLOYED_RE.match(text):
            raise self.fail(
                f"{where}deployed",
                "must be a Lambda function's name or ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME), "
                f"got {text!r}",
            )
        return text

    def python(self, data: Mapping[str, Any], where: str) -> Path:
        text = self.string(data, "python", where)
        if text is None:
            return self.root / APP_ENV_DIR / "bin" / "python"  # made before workers start
        path = (self.root / Path(text).expanduser()).absolute()
        if path.is_dir():
            for candidate in (
                path / "bin" / "python",
                path / "bin" / "python3",
                path / "Scripts" / "python.exe",
            ):
                if candidate.exists():
                    return candidate
            raise self.fail(
                f"{where}python",
                f"is {text!r}, a directory without bin/python; give a virtualenv or an interpreter's path",
            )
        if not path.exists():
            raise self.fail(
                f"{where}python",
                f"is {text!r} but {path} does not exist; give a virtualenv or an interpreter",
            )
        return path

    def timeout(self, data: Mapping[str, Any], where: str) -> float:
        value = data.get("timeout", DEFAULT_TIMEOUT_S)
        if not _is_number(value) or not 0 < value <= MAX_TIMEOUT_S:
            raise self.fail(
                f"{where}timeout", f"must be a number of seconds > 0 and <= 900, got {_show(value)}"
            )
        return float(value)

    def memory(self, data: Mapping[str, Any], where: str) -> int:
        value = data.get("memory", DEFAULT_MEMORY_MB)
        if not _is_int(value) or not MIN_MEMORY_MB <= value <= MAX_MEMORY_MB:
            raise self.fail(
                f"{where}memory", f"must be a whole number of MB from 128 to 10240, got {_show(value)}"
            )
        return value

    def environment(self, data: Mapping[str, Any], where: str) -> dict[str, str]:
        value = data.get("environment", {})
        key = f"{where}environment"
        if not isinstance(value, dict):
            raise self.fail(
                key, f'must be a table of strings, e.g. {{ LOG_LEVEL = "debug" }}, got {_show(value)}'
            )
        env: dict[str, str] = {}
        for name, text in value.items():
            if not _ENV_NAME_RE.match(name):
                raise self.fail(
                    f"{key}.{name}",
                    "is not a valid variable name; use letters, digits and _, starting with a letter",
                )
            if name in RESERVED_ENV:
                raise self.fail(f"{key}.{name}", "is reserved by Lambda; choose another name")
            if not isinstance(text, str):
                raise self.fail(
                    f"{key}.{name}",
                    f'must be a string (Lambda\'s are), got {_show(text)}; quote it: "{text}"',
                )
            env[name] = text
        return env


def _realtime_url_for(http_url: str) -> str:
    """AppSync's realtime endpoint for an HTTP endpoint (the same host for loopback and custom domains)."""
    parts = urlsplit(http_url)
    host = parts.netloc.replace(".appsync-api.", ".appsync-realtime-api.")
    path = parts.path.rstrip("/")
    path = (path if path.endswith("/event") else path + "/event") + "/realtime"
    return urlunsplit(("wss" if parts.scheme == "https" else "ws", host, path, "", ""))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)
