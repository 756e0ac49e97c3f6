"""Errors raised by the warehouse package (messages never contain a password)."""


class WarehouseError(Exception):
    """A warehouse write or read could not be done; nothing was changed."""


class FrameError(WarehouseError):
    """A frame does not fit its table (columns, dtypes, nulls, window or slice)."""
