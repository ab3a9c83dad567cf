"""Stopping a run early and on purpose: on SIGINT/SIGTERM (after saving), or when the loss diverges."""
from __future__ import annotations

import signal
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
        if self.signal is None:
            self.signal = signal.Signals(signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in EXIT_CODES}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
