"""What a download raises: one error whose message says why in words a user can act on, and its cancel case.

DownloadError   a download that did not produce a file; the message says why in words a user can act on
└── Cancelled   the caller's cancel event was set; the partial file is gone
"""

from __future__ import annotations


class DownloadError(RuntimeError):
    """A download that did not produce a file; the message says why in words a user can act on."""


class Cancelled(DownloadError):
    """The download was cancelled; its partial file is removed."""
