"""Exit codes of every `methane-seg` command (the CLI's contract with scripts that call it)."""

OK = 0
EXIT_BAD_INPUT = 2  # bad input or usage: one line on stderr says what is wrong
EXIT_UNAVAILABLE = 3  # Triton unreachable, or the model not ready
EXIT_FAILED = 4  # the server failed the request
