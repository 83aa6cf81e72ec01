"""The one exception type for problems in a user's market data."""

from __future__ import annotations


class DataError(ValueError):
    """A problem in user-supplied market data or data arguments.

    Messages name the offending row by its 0-based position in the data (for a CSV
    file with a header line, row N is on line N + 2), its timestamp, and the bad value.
    """
