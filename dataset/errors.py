"""The error of data that cannot be used as it is."""


class DataValidationError(ValueError):
    """The data file cannot be used as it is; the message says which series and why."""
