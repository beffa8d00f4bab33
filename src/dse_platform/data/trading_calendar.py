"""The DSE trading calendar: Asia/Dhaka sessions, Sunday to Thursday, closures learned from data.

Inside the stretches of time the data covers, a session is a day on which the
market really traded (enough instruments with volume, or an index that moved);
every other day there is a closure (weekends, Eid, the 2020 COVID halt). Outside
the covered stretches no closure is known, so the Sunday-Thursday rule applies.
Everything that asks "what is the next trading day" uses this class.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

DHAKA = ZoneInfo("Asia/Dhaka")
WEEKDAYS = {6, 0, 1, 2, 3}  # Python weekday(): Sunday=6, Monday=0 .. Thursday=3
SESSION_OPEN = dt.time(10, 0)
SESSION_CLOSE = dt.time(14, 30)


def today_dhaka() -> dt.date:
    return dt.datetime.now(DHAKA).date()


@dataclass(frozen=True)
class TradingCalendar:
    """Sorted session dates plus the date ranges within which they are known to be complete."""

    sessions: tuple[dt.date, ...]
    coverage: tuple[tuple[dt.date, dt.date], ...]

    def covered(self, day: dt.date) -> bool:
        return any(start <= day <= end for start, end in self.coverage)

    def is_session(self, day: dt.date) -> bool:
        if self.covered(day):
            i = bisect.bisect_left(self.sessions, day)
            return i < len(self.sessions) and self.sessions[i] == day
        return day.weekday() in WEEKDAYS

    def next_session(self, day: dt.date) -> dt.date:
        """First session strictly after ``day``."""
        candidate = day + dt.timedelta(days=1)
        for _ in range(400):
            if self.is_session(candidate):
                return candidate
            candidate += dt.timedelta(days=1)
        raise ValueError(f"no DSE session within 400 days after {day}")

    def previous_session(self, day: dt.date) -> dt.date:
        candidate = day - dt.timedelta(days=1)
        for _ in range(400):
            if self.is_session(candidate):
                return candidate
            candidate -= dt.timedelta(days=1)
        raise ValueError(f"no DSE session within 400 days before {day}")

    def in_session(self, moment: dt.datetime) -> bool:
        """True while the market is open (10:00-14:30 Asia/Dhaka on a session day)."""
        local = moment.astimezone(DHAKA)
        return self.is_session(local.date()) and SESSION_OPEN <= local.time() < SESSION_CLOSE

    def next_open(self, moment: dt.datetime) -> dt.datetime:
        """The next session's opening time (now's if today's session has not opened yet)."""
        local = moment.astimezone(DHAKA)
        day = local.date()
        if not (self.is_session(day) and local.time() < SESSION_OPEN):
            day = self.next_session(day)
        return dt.datetime.combine(day, SESSION_OPEN, DHAKA)

    # ---- persistence -------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"sessions": [d.isoformat() for d in self.sessions],
                           "coverage": [[a.isoformat(), b.isoformat()] for a, b in self.coverage]})

    @classmethod
    def from_json(cls, text: str) -> TradingCalendar:
        data = json.loads(text)
        return cls(tuple(dt.date.fromisoformat(d) for d in data["sessions"]),
                   tuple((dt.date.fromisoformat(a), dt.date.fromisoformat(b)) for a, b in data["coverage"]))

    def save(self, path: Path) -> None:
        path.write_text(self.to_json())

    @classmethod
    def load(cls, path: Path) -> TradingCalendar:
        return cls.from_json(path.read_text())


def weekday_calendar() -> TradingCalendar:
    """A calendar with no learned closures: every Sunday-Thursday is a session."""
    return TradingCalendar((), ())
