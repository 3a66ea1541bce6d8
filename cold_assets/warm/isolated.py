"""The embedded warm tier's work of a long-lived process, done in a short-lived one.

chDB 4.4 leaves about five threads, and the procfs descriptors they hold, behind each time a
process opens and closes a data path that holds MergeTree tables: the background executors it
starts for them are not shut down with the session. Run workers and the CLI exit and take the
leak with them; the code server does not, and its sensors open the embedded warm tier every
tick (about 300 times a day), so it would run out of descriptors within a day. Their warm
work runs here, in a child process of its own. A ClickHouse server has no such leak: that work
runs in the calling process.
"""

import os
import pickle
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from dagster import ConfigurableResource

import cold_assets

P = ParamSpec("P")
T = TypeVar("T")


class WarmChildFailed(RuntimeError):
    """The child process ended without a result: killed, crashed, or past its time."""


def on_warm(embedded: bool, timeout_s: float, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """fn(*args, **kwargs): in a child process where the warm tier is embedded, else here. fn must
    be a module-level function; Dagster resources among the arguments are passed by their
    configuration. fn's exception is raised here as it was raised there."""
    if not embedded:
        return fn(*args, **kwargs)
    request = pickle.dumps((fn, [_portable(a) for a in args], {k: _portable(v) for k, v in kwargs.items()}))
    with tempfile.TemporaryDirectory(prefix="cold-warm-child-") as folder:
        answer = Path(folder) / "answer.pickle"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([_package_root(), os.environ.get("PYTHONPATH", "")])}
        try:
            child = subprocess.run(
                [sys.executable, "-c", _CHILD, str(answer)], input=request, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, env=env, timeout=timeout_s, check=False,
            )
        except subprocess.TimeoutExpired:
            raise WarmChildFailed(f"{fn.__qualname__} took more than {timeout_s:.0f} s in its child process; it was killed") from None
        if not answer.exists():
            tail = child.stderr.decode(errors="replace").strip().splitlines()[-5:]
            raise WarmChildFailed(f"{fn.__qualname__} ended without a result (exit {child.returncode}): " + " | ".join(tail))
        failed, value = pickle.loads(answer.read_bytes())
    if failed:
        raise value
    return value


class _Resource:
    """A Dagster resource in transit: its class and its configuration (resources themselves do
    not pickle)."""

    def __init__(self, resource: ConfigurableResource):
        self.cls = type(resource)
        self.fields = {name: getattr(resource, name) for name in type(resource).model_fields}

    def rebuilt(self) -> ConfigurableResource:
        return self.cls(**self.fields)


def _portable(value: Any) -> Any:
    return _Resource(value) if isinstance(value, ConfigurableResource) else value


def _restored(value: Any) -> Any:
    return value.rebuilt() if isinstance(value, _Resource) else value


def _package_root() -> str:
    return str(Path(cold_assets.__file__).resolve().parents[1])


def _child(answer: Path) -> None:
    fn, args, kwargs = pickle.loads(sys.stdin.buffer.read())
    try:
        outcome = pickle.dumps((False, fn(*[_restored(a) for a in args], **{k: _restored(v) for k, v in kwargs.items()})))
    except Exception as error:  # raised again in the parent, with its type where it pickles
        error.add_note("in the warm tier's child process:\n" + traceback.format_exc())
        try:
            outcome = pickle.dumps((True, error))
            pickle.loads(outcome)  # (an exception with its own __init__ pickles, but may not unpickle)
        except Exception:
            outcome = pickle.dumps((True, WarmChildFailed(traceback.format_exc())))
    written = answer.with_suffix(".partial")
    written.write_bytes(outcome)
    written.rename(answer)  # whole, or not there


# (Not `-m` this module: its classes would be __main__'s, not the ones the request names.)
_CHILD = "import sys; from pathlib import Path; from cold_assets.warm.isolated import _child; _child(Path(sys.argv[1]))"
