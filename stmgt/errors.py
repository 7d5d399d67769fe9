"""The one error type user-facing code catches: bad data, bad files, bad checkpoints."""


class DataError(ValueError):
    """Input the user supplied is unusable; the message says what and where, in plain words."""

    def __init__(self, problem: str, where: str | None = None):
        self.problem = problem
        self.where = where
        super().__init__(f"{where}: {problem}" if where else problem)
