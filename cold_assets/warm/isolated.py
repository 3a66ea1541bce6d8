"""The embedded warm tier's work of a long-lived process, done in a short-lived one.

chDB 4.4 leaves about five threads, and the procfs descriptors they hold, behind each time a
process opens and closes a data path that holds MergeTree tables: the background executors it
starts for them are not shut down with the session. Run workers and the CLI exit and take the
leak with them; the code server does not, and its sensors open the embedded warm tier every
tick (about 300 times a day), so it would run out of descriptors within a day. Their warm
work runs here, in a child process of its own. A ClickHouse server has no such leak: that work
runs in the calling process.
"""

import cProfile
import math
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from dagster import ConfigurableResource

P = ParamSpec("P")
T = TypeVar("T")


# Diagnostics: where set, the child runs fn under cProfile and keeps its stats as
# <this value>-<fn's name>.pstats (bench steady --profile-dir sets it for its profiled sensor ticks).
PROFILE_ENV = "COLD_WARM_CHILD_PROFILE"


class WarmChildFailed(RuntimeError):
    """The child process ended without a result: killed, crashed, or past its time."""


def on_warm(embedded: bool, timeout_s: float, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """fn(*args, **kwargs): in a child process where the warm tier is embedded, else here. fn must
    be a module-level function; Dagster resources among the arguments are passed by their
    configuration. fn's exception is raised here as it was raised there."""
    if not embedded:
        return fn(*args, **kwargs)
    request = pickle.dumps((fn, [_portable(a) for a in args], {k: _portable(v) for k, v in kwargs.items()}))
    # The child imports what this process imports: this process's path, and not the working
    # directory's (-P), where a stray checkout would otherwise win on the embedded path only.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with tempfile.TemporaryDirectory(prefix="cold-warm-child-") as folder:
        answer = Path(folder) / "answer.pickle"
        command = [sys.executable, "-P", "-c", _CHILD, str(answer), str(math.ceil(timeout_s))]
        try:
            child = subprocess.run(
                command, input=request, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=timeout_s,
                check=False,
            )
            said = f"exit {child.returncode}: " + " | ".join(child.stderr.decode(errors="replace").strip().splitlines()[-5:])
        except subprocess.TimeoutExpired:  # (killed: an answer written before that still counts)
            said = f"more than {timeout_s:.0f} s; it was killed"
        if not answer.exists():
            raise WarmChildFailed(f"{fn.__qualname__} ended without a result in its child process ({said})")
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


def _child(answer: Path, timeout_s: int) -> None:
    # A child whose parent went away (the code server restarted mid-tick) must not hold the
    # embedded warm tier's lock for long: SIGALRM ends it a little after the parent's timeout.
    signal.alarm(timeout_s + 5)
    fn, args, kwargs = pickle.loads(sys.stdin.buffer.read())
    profile_to = os.environ.get(PROFILE_ENV)
    profile = cProfile.Profile() if profile_to else None
    try:
        args, kwargs = [_restored(a) for a in args], {k: _restored(v) for k, v in kwargs.items()}
        outcome = pickle.dumps((False, profile.runcall(fn, *args, **kwargs) if profile is not None else fn(*args, **kwargs)))
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
    if profile is not None:  # diagnostics: never the tick's outcome
        try:
            profile.dump_stats(f"{profile_to}-{fn.__name__}.pstats")
        except OSError as error:
            print(f"{PROFILE_ENV}: the profile was not kept: {error}", file=sys.stderr)
    # Done: fn closed its connection; the interpreter's teardown, with chDB's leaked threads
    # still running, would only cost time.
    os._exit(0)


# (Not `-m` this module: its classes would be __main__'s, not the ones the request names.)
_CHILD = (
    "import sys; from pathlib import Path; from cold_assets.warm.isolated import _child; _child(Path(sys.argv[1]), int(sys.argv[2]))"
)
