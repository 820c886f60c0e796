"""livelambda.toml / [tool.livelambda]: defaults, every key, and every error message."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from devserver.config import AppConfig, ConfigError, find_config, load_config
from stub_runtime.errors import LivelambdaError

REPO = Path(__file__).resolve().parent.parent


def write(app: Path, text: str, name: str = "livelambda.toml") -> Path:
    app.mkdir(parents=True, exist_ok=True)
    (app / name).write_text(text)
    return app


def error_of(app: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(app)
    return str(caught.value)


def test_minimal_config_and_defaults(tmp_path: Path) -> None:
    app = write(tmp_path / "my_app", '[functions.hello]\nhandler = "hello.handler"\n')
    config = load_config(app)
    assert isinstance(config, AppConfig)
    assert config.app == "my-app"  # the directory's name, made a valid channel segment
    assert config.stage == "dev"
    assert config.region is None
    assert config.root == app.resolve() and config.path == app.resolve() / "livelambda.toml"
    assert config.endpoint.mode == "local"
    assert config.endpoint.http_url == "http://127.0.0.1:8790/event"
    assert config.endpoint.realtime_url == "ws://127.0.0.1:8790/event/realtime"
    assert config.endpoint.auth == "api_key" and config.endpoint.api_key is None
    assert (config.dashboard.port, config.dashboard.keep) == (8791, 500)
    hello = config.functions["hello"]
    assert hello.name == "hello" and hello.handler == "hello.handler"
    assert hello.source == app.resolve()
    # no `python` key: the app's own venv (made before workers start), never livelambda's interpreter
    assert hello.python == app.resolve() / ".livelambda" / "venv" / "bin" / "python"
    assert hello.app_env == app.resolve()
    assert (hello.timeout, hello.memory, dict(hello.environment)) == (3.0, 128, {})


def test_every_key(tmp_path: Path) -> None:
    venv = tmp_path / "app" / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text("")
    (tmp_path / "app" / "src").mkdir()
    app = write(
        tmp_path / "app",
        """
app = "shop"
stage = "ada"
region = "eu-west-1"

[endpoint]
mode = "aws"
http_url = "https://abc.appsync-api.eu-west-1.amazonaws.com/event"
auth = "api_key"
api_key = "da2-xyz"

[dashboard]
port = 9000
keep = 50

[functions.orders]
handler = "orders.api.handler"
source = "src"
python = ".venv"
timeout = 900
memory = 10240
environment = { TABLE = "orders", LOG_LEVEL = "debug" }
""",
    )
    config = load_config(app)
    assert (config.app, config.stage, config.region) == ("shop", "ada", "eu-west-1")
    assert config.endpoint.mode == "aws"
    assert (
        config.endpoint.realtime_url
        == "wss://abc.appsync-realtime-api.eu-west-1.amazonaws.com/event/realtime"
    )
    assert config.endpoint.api_key == "da2-xyz"
    assert (config.dashboard.port, config.dashboard.keep) == (9000, 50)
    orders = config.functions["orders"]
    assert orders.source == (app / "src").resolve()
    assert orders.python == (app / ".venv" / "bin" / "python").absolute()
    assert orders.app_env is None  # its own interpreter: livelambda makes no venv for it
    assert (orders.timeout, orders.memory) == (900.0, 10240)
    assert orders.environment == {"TABLE": "orders", "LOG_LEVEL": "debug"}


def test_endpoint_http_url_implies_aws_and_custom_domain(tmp_path: Path) -> None:
    app = write(
        tmp_path / "a",
        '[endpoint]\nhttp_url = "https://events.example.com/event"\nauth = "iam"\n'
        '[functions.f]\nhandler = "m.h"\n',
    )
    endpoint = load_config(app).endpoint
    assert endpoint.mode == "aws" and endpoint.auth == "iam"
    assert endpoint.realtime_url == "wss://events.example.com/event/realtime"


def test_pyproject_tool_table(tmp_path: Path) -> None:
    app = write(
        tmp_path / "p",
        '[project]\nname = "x"\n\n[tool.livelambda]\napp = "x"\n\n'
        '[tool.livelambda.functions.api]\nhandler = "api.handler"\ntimeout = 0.5\n',
        name="pyproject.toml",
    )
    config = load_config(app)
    assert config.path.name == "pyproject.toml"
    assert config.functions["api"].timeout == 0.5
    assert find_config(app) == config.path
    (app / "pyproject.toml").write_text('[tool.livelambda.functions.api]\nhandler = "api"\n')
    assert error_of(app) == (
        "pyproject.toml: tool.livelambda.functions.api.handler must look like 'module.function', got 'api'"
    )


def test_the_example_app_loads() -> None:
    config = load_config(REPO / "examples" / "hello")
    assert set(config.functions) == {"hello", "api"}
    assert config.functions["hello"].handler == "hello.handler"
    assert config.functions["api"].environment == {"GREETING": "Hello"}


def test_config_error_is_a_livelambda_error() -> None:
    assert issubclass(ConfigError, LivelambdaError)


def test_no_config(tmp_path: Path) -> None:
    tmp_path.joinpath("pyproject.toml").write_text('[project]\nname = "x"\n')
    message = error_of(tmp_path)
    assert message.startswith(f"{tmp_path}: no livelambda.toml and no [tool.livelambda] in pyproject.toml;")
    assert "create livelambda.toml" in message and 'handler = "hello.handler"' in message
    assert find_config(tmp_path) is None


def test_missing_directory(tmp_path: Path) -> None:
    assert error_of(tmp_path / "nope") == (
        f"{tmp_path / 'nope'}: no such directory; pass the directory that holds livelambda.toml"
    )


def test_both_files(tmp_path: Path) -> None:
    write(tmp_path, '[functions.f]\nhandler = "m.h"\n')
    write(tmp_path, '[tool.livelambda.functions.f]\nhandler = "m.h"\n', name="pyproject.toml")
    assert error_of(tmp_path) == (
        "livelambda.toml: this app is also configured by [tool.livelambda] in pyproject.toml; "
        "keep one of the two"
    )


def test_invalid_toml(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "[functions.f\n"))
    assert message.startswith("livelambda.toml: not valid TOML: ")


F = '[functions.f]\nhandler = "m.h"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # unknown keys, with a suggestion when one is close
        ("fucntions = 1\n" + F, "livelambda.toml: fucntions is not a known key; did you mean 'functions'?"),
        (
            "colour = 1\n" + F,
            "livelambda.toml: colour is not a known key; known keys: app, stage, region, endpoint, "
            "dashboard, aws, watch, functions",
        ),
        (
            '[functions.f]\nhandlr = "m.h"\n',
            "livelambda.toml: functions.f.handlr is not a known key; did you mean 'handler'?",
        ),
        (
            '[endpoint]\nhttp_ur = "x"\n' + F,
            "livelambda.toml: endpoint.http_ur is not a known key; did you mean 'http_url'?",
        ),
        (
            "[dashboard]\nprot = 1\n" + F,
            "livelambda.toml: dashboard.prot is not a known key; did you mean 'port'?",
        ),
        # top level
        (
            'app = "my app"\n' + F,
            "livelambda.toml: app must be 1-50 letters, digits or dashes (it names "
            "AppSync channels), got 'my app'",
        ),
        ("app = 5\n" + F, "livelambda.toml: app must be a string, got 5"),
        (
            'stage = "-dev"\n' + F,
            "livelambda.toml: stage must be 1-50 letters, digits or dashes (it names "
            "AppSync channels), got '-dev'",
        ),
        (
            'region = "Europe"\n' + F,
            "livelambda.toml: region must be an AWS region such as 'us-east-1', got 'Europe'",
        ),
        (
            'app = "a"\n',
            "livelambda.toml: functions must define at least one function, e.g. [functions.hello] "
            'with handler = "hello.handler"',
        ),
        ("functions = 3\n", "livelambda.toml: functions must be a table ([functions]), got 3"),
        ("endpoint = []\n" + F, "livelambda.toml: endpoint must be a table ([endpoint]), got an array"),
        # functions
        (
            "[functions.f]\n",
            "livelambda.toml: functions.f.handler is required; set it to 'module.function', "
            "e.g. 'app.handler'",
        ),
        (
            '[functions.hello]\nhandler = "hello"\n',
            "livelambda.toml: functions.hello.handler must look like 'module.function', got 'hello'",
        ),
        (
            '[functions.f]\nhandler = "my-mod.h"\n',
            "livelambda.toml: functions.f.handler must look like 'module.function', got 'my-mod.h'",
        ),
        ("[functions.f]\nhandler = 1\n", "livelambda.toml: functions.f.handler must be a string, got 1"),
        (
            'functions = { "my fn" = { handler = "m.h" } }\n',
            "livelambda.toml: functions.my fn is not a valid Lambda function name; "
            "use 1-64 letters, digits, - or _",
        ),
        ("[functions]\nf = 1\n", "livelambda.toml: functions.f must be a table ([functions.f]), got 1"),
        (
            F + "timeout = 0\n",
            "livelambda.toml: functions.f.timeout must be a number of seconds > 0 and <= 900, got 0",
        ),
        (
            F + "timeout = 901\n",
            "livelambda.toml: functions.f.timeout must be a number of seconds > 0 and <= 900, got 901",
        ),
        (
            F + 'timeout = "3"\n',
            "livelambda.toml: functions.f.timeout must be a number of seconds > 0 and <= 900, got '3'",
        ),
        (
            F + "timeout = true\n",
            "livelambda.toml: functions.f.timeout must be a number of seconds > 0 and <= 900, got True",
        ),
        (
            F + "memory = 64\n",
            "livelambda.toml: functions.f.memory must be a whole number of MB from 128 to 10240, got 64",
        ),
        (
            F + "memory = 256.5\n",
            "livelambda.toml: functions.f.memory must be a whole number of MB from 128 to 10240, got 256.5",
        ),
        (
            F + "environment = 3\n",
            "livelambda.toml: functions.f.environment must be a table of strings, e.g. "
            '{ LOG_LEVEL = "debug" }, got 3',
        ),
        (
            F + "environment = { PORT = 5 }\n",
            "livelambda.toml: functions.f.environment.PORT must be a string "
            '(Lambda\'s are), got 5; quote it: "5"',
        ),
        (
            F + 'environment = { AWS_REGION = "x" }\n',
            "livelambda.toml: functions.f.environment.AWS_REGION is reserved by Lambda; choose another name",
        ),
        (
            F + 'environment = { "1X" = "x" }\n',
            "livelambda.toml: functions.f.environment.1X is not a valid "
            "variable name; use letters, digits and _, starting with a letter",
        ),
        # endpoint
        (
            '[endpoint]\nmode = "cloud"\n' + F,
            "livelambda.toml: endpoint.mode must be 'local' (livelambda cloud) "
            "or 'aws' (a real AppSync Events API), got 'cloud'",
        ),
        (
            '[endpoint]\nmode = "aws"\n' + F,
            "livelambda.toml: endpoint.http_url is required with mode = 'aws'; "
            "set it to your API's HTTP endpoint, e.g. 'https://xxxx.appsync-api.us-east-1.amazonaws.com/event'",
        ),
        (
            '[endpoint]\nhttp_url = "ftp://x/event"\n' + F,
            "livelambda.toml: endpoint.http_url must be an http:// or https:// URL, got 'ftp://x/event'",
        ),
        (
            '[endpoint]\nhttp_url = "https://x/event"\nrealtime_url = "https://x/event/realtime"\n' + F,
            "livelambda.toml: endpoint.realtime_url must be a ws:// or wss:// URL, got 'https://x/event/realtime'",
        ),
        (
            '[endpoint]\nauth = "password"\n' + F,
            "livelambda.toml: endpoint.auth must be 'api_key' or 'iam', got 'password'",
        ),
        (
            '[endpoint]\nauth = "iam"\napi_key = "da2-x"\n' + F,
            "livelambda.toml: endpoint.api_key is not used with auth = 'iam'; remove one of the two",
        ),
        # dashboard
        (
            "[dashboard]\nport = 70000\n" + F,
            "livelambda.toml: dashboard.port must be a port number 0-65535 (0: any free port), got 70000",
        ),
        (
            "[dashboard]\nkeep = 0\n" + F,
            "livelambda.toml: dashboard.keep must be a whole number of invocations >= 1, got 0",
        ),
    ],
)
def test_error_messages(tmp_path: Path, text: str, message: str) -> None:
    assert error_of(write(tmp_path, text)) == message


def test_source_must_be_a_directory(tmp_path: Path) -> None:
    write(tmp_path, F + 'source = "src"\n')
    assert error_of(tmp_path) == (
        f"livelambda.toml: functions.f.source is 'src' but {tmp_path.resolve() / 'src'} is not a directory; "
        "give the code's directory, relative to the app root"
    )


def test_python_must_exist(tmp_path: Path) -> None:
    write(tmp_path, F + 'python = "nope/bin/python"\n')
    assert error_of(tmp_path) == (
        f"livelambda.toml: functions.f.python is 'nope/bin/python' but {tmp_path / 'nope/bin/python'} "
        "does not exist; give a virtualenv or an interpreter"
    )
    (tmp_path / "empty-venv").mkdir()
    write(tmp_path, F + 'python = "empty-venv"\n')
    assert error_of(tmp_path) == (
        "livelambda.toml: functions.f.python is 'empty-venv', a directory without bin/python; "
        "give a virtualenv or an interpreter's path"
    )
    write(tmp_path, F + f'python = "{sys.executable}"\n')
    assert load_config(tmp_path).functions["f"].python == Path(sys.executable)


def test_deployed_names_and_production_stages(tmp_path: Path) -> None:
    (tmp_path / "livelambda.toml").write_text(
        '[aws]\nproduction_stages = ["live", "main"]\n'
        '[functions.a]\nhandler = "a.h"\ndeployed = "arn:aws:lambda:eu-west-1:123456789012:function:Real-A"\n'
        '[functions.b]\nhandler = "b.h"\n'
    )
    config = load_config(tmp_path)
    assert config.aws.production_stages == ("live", "main")
    assert config.deployed_name(config.functions["a"]) == "Real-A"
    assert config.deployed_name(config.functions["b"]) == "b"
    assert config.function_for("Real-A") is config.functions["a"]
    (tmp_path / "livelambda.toml").write_text('[functions.a]\nhandler = "a.h"\ndeployed = "not a name"\n')
    with pytest.raises(ConfigError, match=r"functions\.a\.deployed must be a Lambda function's name or ARN"):
        load_config(tmp_path)
    bad = '[aws]\nproduction_stages = "prod"\n[functions.a]\nhandler = "a.h"\n'
    (tmp_path / "livelambda.toml").write_text(bad)
    with pytest.raises(ConfigError, match=r"aws\.production_stages must be a list of words"):
        load_config(tmp_path)
