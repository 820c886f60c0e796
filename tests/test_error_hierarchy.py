"""One error hierarchy, typed by fault: every exception class livelambda defines sits under exactly one
fault branch of LivelambdaError, says its `error_type`, and is drawn in stub_runtime/errors.py."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import devserver
import stub_runtime
from stub_runtime import errors
from stub_runtime.errors import CallerFault, ConnectionFault, DevServerFault, HandlerFault, LivelambdaError

FAULTS = (HandlerFault, DevServerFault, ConnectionFault, CallerFault)

# Exception classes that are not livelambda errors, and why.
ALLOWED = {
    # Raised by its own signal handler to unwind uvicorn's loop; caught a few lines below, never seen.
    "devserver.servers.bounded._Stopped": "a private signal inside run_until_stopped",
}


def _modules() -> list[ModuleType]:
    found = []
    for package in (stub_runtime, devserver):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.rsplit(".", 1)[-1] != "__main__":  # runs the CLI when imported
                found.append(importlib.import_module(info.name))
    return found


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in the two packages (nested ones too), by qualified name."""
    classes: dict[str, type[BaseException]] = {}

    def visit(owner: object, module: str) -> None:
        for obj in vars(owner).values():
            if inspect.isclass(obj) and obj.__module__ == module:
                if issubclass(obj, BaseException):
                    classes[f"{module}.{obj.__qualname__}"] = obj
                visit(obj, module)

    for module in _modules():
        visit(module, module.__name__)
    return classes


CLASSES = _exception_classes()
THEIRS = {name: cls for name, cls in CLASSES.items() if name not in ALLOWED and cls not in FAULTS}


def test_the_walk_finds_the_known_errors() -> None:
    # A walk that silently found nothing would pass every check below.
    for name in ("stub_runtime.sandbox.HandlerError", "devserver.config.ConfigError",
                 "stub_runtime.appsync.errors.CircuitOpen", "devserver.cloud.sigv4.SignatureError"):
        assert name in CLASSES
    assert len(THEIRS) > 40


@pytest.mark.parametrize("name", sorted(THEIRS))
def test_each_error_is_under_exactly_one_fault(name: str) -> None:
    cls = THEIRS[name]
    if cls is LivelambdaError:
        return
    assert issubclass(cls, LivelambdaError), f"{name} is not a LivelambdaError (or list it in ALLOWED)"
    branches = [fault.__name__ for fault in FAULTS if issubclass(cls, fault)]
    assert len(branches) == 1, f"{name} is under {branches or 'no fault branch'}"
    assert isinstance(cls.error_type, str) and cls.error_type


@pytest.mark.parametrize("name", sorted(THEIRS))
def test_each_error_is_drawn_in_the_tree(name: str) -> None:
    assert errors.__doc__ is not None
    assert THEIRS[name].__name__ in errors.__doc__, f"draw {name} in stub_runtime/errors.py's tree"


def test_the_allow_list_is_current() -> None:
    for name in ALLOWED:
        assert name in CLASSES, f"{name} is gone: take it off ALLOWED"
        assert not issubclass(CLASSES[name], LivelambdaError), f"{name} is a LivelambdaError now"


def test_builtin_bases_that_callers_catch_are_kept() -> None:
    from devserver.cloud.faults import FaultSpecError
    from devserver.runtime.fork_launcher import ForkServerError

    assert issubclass(ForkServerError, OSError) and issubclass(ForkServerError, DevServerFault)
    err = ForkServerError(2, "cannot start python9: No such file")
    assert err.errno == 2 and str(err) == "[Errno 2] cannot start python9: No such file"
    assert issubclass(FaultSpecError, ValueError) and issubclass(FaultSpecError, CallerFault)


def test_errors_whose_type_is_per_instance_keep_it() -> None:
    from devserver.cloud.appsync_emulator import AppSyncError
    from stub_runtime.sandbox import HandlerError

    err = HandlerError("KeyError", "'x'", ["line 1"])
    assert isinstance(err, HandlerFault) and err.error_type == "KeyError"
    assert AppSyncError("BadRequestException", "no").error_type == "BadRequestException"


def test_a_handler_error_is_not_reworded_after_sending() -> None:
    from stub_runtime.outcomes import MAY_HAVE_RUN, EndpointUnreachable, after_sending
    from stub_runtime.sandbox import HandlerError

    err = HandlerError("ValueError", "bad input", [])
    assert str(after_sending(err)) == "bad input"
    assert MAY_HAVE_RUN in str(after_sending(EndpointUnreachable("wss://x", "refused")))
