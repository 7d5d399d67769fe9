"""`python -m stmgt.launch ARGS` runs `torchrun ARGS` with Ctrl-C's default handler restored.

A process started in the background by a shell without job control (`nohup streamlit run app.py &`
in a script) inherits SIGINT *ignored*, and torchrun, started from it, would ignore the dashboard's
cancel until it installs its own handlers: a run cancelled as it starts then trained to its end."""

import runpy
import signal
import sys

if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv[0] = "torchrun"
    runpy.run_module("torch.distributed.run", run_name="__main__", alter_sys=True)
