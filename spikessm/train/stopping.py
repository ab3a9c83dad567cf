"""Stopping a run early and on purpose: on SIGINT/SIGTERM (after saving), or when the loss diverges."""
from __future__ import annotations

import os
import signal
import sys
import threading


class TrainingStopped(Exception):
    """The run ended before its last epoch. ``str()`` is the one line for stderr (empty on the
    processes other than rank 0, which stay quiet); ``exit_code`` is what the CLI returns."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


# 128 + the signal number, as a shell reports a process killed by it
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
EXIT_DIVERGED = 3  # a non-finite loss: neither a bad command (2) nor a bug (1)


# The first SIGINT/SIGTERM this process got, whichever handler took it; reset by QuietExitOnSignal.
first_signal: signal.Signals | None = None


def _record(signum: int) -> None:
    global first_signal
    if first_signal is None:
        first_signal = signal.Signals(signum)


class QuietExitOnSignal:
    """The command line's handlers outside training: SIGINT or SIGTERM ends the process at once with
    one line and 130 / 143, instead of a KeyboardInterrupt traceback (or a C++ abort, if it lands
    inside ``import torch``). Nothing is being saved then: data loading, model building, evaluation;
    every file is written atomically, so the files already there stay intact.

    While training, :class:`StopOnSignal` takes over (save, then stop). A signal after one the run
    is already stopping for is ignored, so the exit code stays the first signal's (SIGTERM then
    SIGINT: 143). ``process_exits``: the process ends when the context does (the command line run as a
    program): after a stop on a signal, later signals are then ignored until the interpreter has
    exited, instead of killing it (Python restores the default handlers while it shuts down)."""

    def __init__(self, process_exits: bool = False):
        self._previous = {}
        self.process_exits = process_exits

    def _handle(self, signum, frame):
        if first_signal is not None:  # already stopping on an earlier signal
            return
        _record(signum)
        sig = signal.Signals(signum)
        try:
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - a closed pipe: nothing to flush to
            pass
        os.write(2, f"spikessm: interrupted by {sig.name}; nothing in progress was saved\n".encode())
        os._exit(EXIT_CODES[sig])

    def __enter__(self):
        global first_signal
        first_signal = None
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in EXIT_CODES}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, signal.SIG_IGN if self.process_exits and first_signal is not None else handler)


class StopOnSignal:
    """Context manager that turns SIGINT and SIGTERM into a request the training loop polls.

    The loop finishes its current optimizer step, saves a checkpoint and raises
    :class:`TrainingStopped`. Further signals are ignored while it does so: under torchrun a Ctrl-C
    reaches every process twice (from the terminal and forwarded by torchrun), and the second one
    must not abort the save. (SIGKILL still ends a run at once; the previous checkpoint survives.)
    Outside the main thread, where Python cannot install handlers, nothing is caught.
    """

    def __init__(self):
        self.signal: signal.Signals | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        _record(signum)
        if self.signal is None:
            self.signal = signal.Signals(signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in EXIT_CODES}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
