"""Long commands (`train`, `evaluate`) stop gracefully on SIGINT and SIGTERM, however started.

A script that starts `train` in the background (`nohup … &`) hands it SIGINT *ignored*, which
Python keeps, and SIGTERM is what `kill`, systemd and container runtimes send: by default it ends
the process mid-batch and the run reads "interrupted". Here the first of either signal asks the
work to stop after the current batch (the cancel signal `fit` and `evaluate` already take); the
command then records the run as cancelled and exits with 128 + the signal's number (130 for
SIGINT, 143 for SIGTERM), as shells report a process ended by it. A second signal stops at once.

Under torchrun (`stmgt.training.distributed`) SIGINT alone is taken, as before: it reaches every rank, they
agree to stop after the batch, and each ends normally; SIGTERM stays the launcher's order to stop
now (`distributed.process_group`), and a second Ctrl-C is left to torchrun."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from stmgt.training import distributed


class Stopped(KeyboardInterrupt):
    """A long command ended by a signal; `signum` gives the exit status (128 + signum)."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


class StopRequest(threading.Event):
    """Set by the first SIGINT or SIGTERM; `signum` is that signal (None under torchrun, where the
    ranks end normally after a cancel)."""

    def __init__(self):
        super().__init__()
        self.signum: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "a signal"


@contextmanager
def stop_on_signals() -> Iterator[StopRequest | None]:
    """Install the handlers for the block and restore the previous ones after it. Yields the
    request to pass as `cancel`; None outside the main thread (the dashboard's training thread),
    where Python allows no signal handler and the caller's own cancel applies."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    request, ranks, received = StopRequest(), distributed.launched(), []

    def stop(signum, frame):
        received.append(signum)       # first of all: a signal handled while this one runs must see it
        if ranks:
            request.set()
        elif len(received) > 1:
            raise Stopped(signum, f"stopped at once by a second {signal.Signals(signum).name}")
        else:
            request.signum = signum
            # os.write, not print: the handler may run while the main thread is inside a print to stderr
            os.write(2, f"{request.name}: stopping after the current batch; send it again to stop at once\n".encode())
            request.set()

    signals = (signal.SIGINT,) if ranks else (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, stop) for sig in signals}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
