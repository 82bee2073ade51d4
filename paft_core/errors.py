"""Errors the user can fix; the CLI prints their message as one line, without a traceback."""


class PaftError(Exception):
    """A problem with the user's input, reported before long work starts."""


class ConfigError(PaftError):
    """A spec file or field is missing or invalid."""


class DataError(PaftError):
    """A dataset file, row or field is missing or invalid."""


class ModelError(PaftError):
    """A base model cannot be found, read or trusted."""


class OutputError(PaftError):
    """An output folder holds something that must not be overwritten."""


class ServerError(PaftError):
    """A local server cannot start (its port is taken), or a configured one does not answer."""
