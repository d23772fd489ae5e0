"""The transfer of one URL into a partial file, in plain urllib so resuming, progress and cancelling stay in our hands:
resumed with Range (and If-Range), resumed again when a connection drops mid-body, cut short by a cancel event."""

from __future__ import annotations

import http.client
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import IO, NoReturn
from urllib.parse import urlsplit

import msgspec

from sdrest import http_only
from sdrest.library.download_errors import Cancelled, DownloadError
from sdrest.library.partials import CHUNK, Partial
from sdrest.library.url_policy import origin

ProgressFn = Callable[[int, int | None], None]  # (bytes done, total or None)

_PROGRESS_EVERY = 0.1  # seconds between progress calls
_RESUMES = 5  # dropped connections resumed within one call, when the broken attempt had brought bytes


class Fetch:
    """The transfer of one URL into a partial file: resumed with Range, cut short by `cancel`."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        part: Partial,
        explain: Callable[[int], str],
        allow: Callable[[str], None],
        unreachable: str,
    ) -> None:
        self.url = url
        self.unreachable = unreachable  # "cannot reach X (reason): <this>"
        self.headers = {**headers, "accept-encoding": "identity"}
        self.part = part
        self.explain = explain
        self.opener = http_only.opener(_RedirectPolicy(allow))
        self.last_report = 0.0

    def run(self, progress: ProgressFn | None, cancel: threading.Event | None, timeout: float) -> None:
        self.progress, self.cancel = progress, cancel
        resumes = 0
        while True:
            self._check_cancel()
            size = self.part.info.size
            if size is not None and self.part.done > size:
                self.part.restart()
            if size is not None and self.part.done == size:
                break  # whole: nothing (more) to fetch
            self.part.check_space()
            before = self.part.done
            try:
                self._attempt(timeout)
            except urllib.error.HTTPError as e:
                raise DownloadError(self.explain(e.code)) from None
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                reason = getattr(e, "reason", None) or e or type(e).__name__
                if self.part.done != before and resumes < _RESUMES:
                    resumes += 1
                    continue
                self._broken(f" ({reason})")
            size = self.part.info.size
            if size is None or self.part.done >= size:
                break  # a body of unknown length ends where the server ends it
            if self.part.done != before and resumes < _RESUMES:
                resumes += 1  # the connection dropped mid-body: ask for the rest at once
                continue
            self._broken("")
        self._report(force=True)

    def _broken(self, reason: str) -> NoReturn:
        host = urlsplit(self.url).hostname
        if self.part.done == 0:
            raise DownloadError(f"cannot reach {host}{reason}: {self.unreachable}") from None
        raise DownloadError(
            f"the connection to {host} broke after {self.part.done} of {self.part.info.size or '?'} bytes{reason}; "
            "run the download again to resume it"
        ) from None

    def _attempt(self, timeout: float) -> None:
        headers = dict(self.headers)
        offset = self.part.done
        if offset:
            headers["range"] = f"bytes={offset}-"
            if self.part.info.validator:
                headers["if-range"] = self.part.info.validator
        request = urllib.request.Request(self.url, headers=headers)
        try:
            response = self.opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 416 and offset:  # asked past the end: the remote file changed, or the partial is whole
                self.part.restart()
                return
            raise
        with response:
            self._start(response, offset)
            self._report(force=True)
            while data := response.read1(CHUNK):
                self._check_cancel()
                self.part.write(data)
                self._report()
        self.part.file.flush()

    def _start(self, response: http.client.HTTPResponse, offset: int) -> None:
        """Make the partial file agree with what the server sends: the rest (206) or everything (200)."""
        length = response.headers.get("content-length")
        if response.status == 206:
            match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("content-range", ""))
            if not match or int(match[1]) != offset:
                raise DownloadError(f"the server sent a range other than the one asked for ({match and match[0]})")
            if match[2] != "*":
                self._set_size(int(match[2]))
        else:
            if offset:
                self.part.restart()  # the server ignored the Range (or the file changed): start again
            if length and length.isdigit():
                self._set_size(int(length))
        if self.part.info.validator is None:
            etag = response.headers.get("etag")
            strong = etag if etag and not etag.startswith("W/") else None
            validator = strong or response.headers.get("last-modified")
            if validator:
                self.part.info = msgspec.structs.replace(self.part.info, validator=validator)
                self.part.save_info()

    def _set_size(self, size: int) -> None:
        if self.part.info.size is not None and self.part.info.size != size:
            self.part.restart()
            raise DownloadError(
                f"the server's file has {size} bytes, not the {self.part.info.size} expected; try again"
            )
        if self.part.info.size is None:
            self.part.info = msgspec.structs.replace(self.part.info, size=size)
            self.part.save_info()

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            self.part.remove()
            raise Cancelled("the download was cancelled")

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is not None and (force or now - self.last_report >= _PROGRESS_EVERY):
            self.last_report = now
            self.progress(self.part.done, self.part.info.size)


class _RedirectPolicy(urllib.request.HTTPRedirectHandler):
    """Follows redirects only where `allow` permits, and never carries the token to another origin."""

    def __init__(self, allow: Callable[[str], None]) -> None:
        self.allow = allow

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: object, newurl: str
    ) -> urllib.request.Request | None:
        self.allow(newurl)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)  # type: ignore[arg-type]
        if new is not None and origin(newurl) != origin(req.full_url):
            new.remove_header("Authorization")
        return new
