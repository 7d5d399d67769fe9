"""`python -m stmgt.training.launch ARGS` runs `torchrun ARGS` with Ctrl-C's default handler restored.

A process started in the background by a shell without job control (`nohup streamlit run app.py &`
in a script) inherits SIGINT *ignored*, and torchrun, started from it, would ignore the dashboard's
cancel until it installs its own handlers: a run cancelled as it starts then trained to its end.
While torch is imported (seconds) a SIGINT is only recorded, and ends the launch once the import is
done: raised as KeyboardInterrupt in the middle of an import, it can be swallowed by a module that
catches every exception there, and the cancel is lost."""

import importlib
import runpy
import signal
import sys

if __name__ == "__main__":
    interrupted = []
    signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    importlib.import_module("torch.distributed.run")
    if interrupted:
        sys.exit(128 + signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv[0] = "torchrun"
    runpy.run_module("torch.distributed.run", run_name="__main__", alter_sys=True)
