"""Scroll paging for `event/query`: when to stop, and when the server is going round in circles.

The HEC gateway's end-of-scroll signal differs between observations (reference section 3): a
null scroll id on the last page, or a constant scroll id and a terminal empty page. We stop on
any of: scrollId null / "" / absent, an empty page, the page cap. A page whose events were all
on an earlier page of the same scroll means the server is looping: stop as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_MAX_PAGES = 5_000

# Why a scroll ended.
END_NO_SCROLL_ID = "no_scroll_id"
END_EMPTY_PAGE = "empty_page"
END_PAGE_CAP = "page_cap"
END_LOOP = "loop"


@dataclass
class ScrollPaginator:
    """Feed it each page; it answers with the scroll id to send next, or None to stop.

    `ended_by` says why the scroll ended; `END_PAGE_CAP` means the window may hold more than was
    read (the caller splits it). A loop is treated as the end of the data (with a warning).
    """

    max_pages: int = DEFAULT_MAX_PAGES
    pages: int = 0
    ended_by: str | None = None
    _seen_keys: set[str] = field(default_factory=set, repr=False)

    def next_scroll_id(self, scroll_id: object, page_keys: list[str]) -> str | None:
        self.pages += 1
        if not page_keys:
            self.ended_by = END_EMPTY_PAGE
            return None
        if all(key in self._seen_keys for key in page_keys):
            self.ended_by = END_LOOP
            return None
        self._seen_keys.update(page_keys)
        if not isinstance(scroll_id, str) or not scroll_id:
            self.ended_by = END_NO_SCROLL_ID
            return None
        if self.pages >= self.max_pages:
            self.ended_by = END_PAGE_CAP
            return None
        return scroll_id

    @property
    def incomplete(self) -> bool:
        """True when the scroll stopped for a reason that may have left records unread."""
        return self.ended_by == END_PAGE_CAP
