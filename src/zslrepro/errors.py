"""User-facing errors.

Anything a user can fix (bad config, missing dataset, corrupt file, no network) is raised as a
:class:`ZslError`. The CLI prints its message on one line and exits with status 2, so a user never
has to read a traceback from deep inside the library to learn what to do.
"""


class ZslError(Exception):
    """An error whose message tells the user what went wrong and what to do about it."""


class ConfigError(ZslError):
    """A configuration file is missing, unreadable, or does not match its schema."""


class DatasetError(ZslError):
    """A dataset is missing, incomplete, or inconsistent with the benchmark's layout."""
