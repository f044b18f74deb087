"""A nextcord bot toolkit whose long-running workflows never lose their results."""

__version__ = "0.1.0"
