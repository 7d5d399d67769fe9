"""The one error type user-facing code catches: bad data, bad files, bad checkpoints."""


class DataError(ValueError):
    """Input the user supplied is unusable; the message says what and where, in plain words, on
    one line (the command line prints it as is, the dashboard in an error box)."""

    def __init__(self, problem: str, where: str | None = None):
        self.problem = " ".join(str(problem).split())
        self.where = where
        super().__init__(f"{where}: {self.problem}" if where else self.problem)


def reason(exc: BaseException, limit: int = 160) -> str:
    """The first line of a library's exception, shortened: HDF5, pandas and torch append traces
    and hints over many lines that mean nothing to the user."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"
