"""Errors a user can fix. The CLI prints them as one line (what, where, how to fix) and exits 2."""


class UserError(Exception):
    """A mistake in the user's input: arguments, configuration or files. Exit code 2."""


class ConfigError(UserError):
    """parity.toml (or an option) is invalid: the message names the file, key and reason."""
