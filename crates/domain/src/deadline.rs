//! Acknowledgement deadlines. Red alerts run round the clock; amber and green count working
//! time only: 09:00–17:00 UK local time, Monday to Friday, outside the bank holidays of the
//! nation of the body that must act ([`Calendars`]: England and Wales, Scotland, Northern
//! Ireland, shipped in `data/bank_holidays_*.csv`).
//!
//! UK local time is GMT in winter and BST (UTC+1) from 01:00 UTC on the last Sunday of March
//! to 01:00 UTC on the last Sunday of October; that rule is all this module needs, so no time
//! zone database is pulled in.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};

use crate::Error;

const ENGLAND_AND_WALES_CSV: &str = include_str!("../data/bank_holidays_england_wales.csv");
const SCOTLAND_CSV: &str = include_str!("../data/bank_holidays_scotland.csv");
const NORTHERN_IRELAND_CSV: &str = include_str!("../data/bank_holidays_northern_ireland.csv");

/// Red / amber / green.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rag {
    Red,
    Amber,
    Green,
}

impl Rag {
    /// The proto value carried on alerts and sections.
    pub fn to_proto(self) -> kinlink_proto::v1::Rag {
        match self {
            Rag::Red => kinlink_proto::v1::Rag::Red,
            Rag::Amber => kinlink_proto::v1::Rag::Amber,
            Rag::Green => kinlink_proto::v1::Rag::Green,
        }
    }

    /// Reads a proto value; anything but red or amber is green.
    pub fn from_proto(value: i32) -> Self {
        match kinlink_proto::v1::Rag::try_from(value) {
            Ok(kinlink_proto::v1::Rag::Red) => Rag::Red,
            Ok(kinlink_proto::v1::Rag::Amber) => Rag::Amber,
            _ => Rag::Green,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rag::Red => "red",
            Rag::Amber => "amber",
            Rag::Green => "green",
        }
    }
}

/// How long each priority may wait for acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlinePolicy {
    /// Red: wall-clock time, 24/7.
    pub red: Duration,
    /// Amber: working time.
    pub amber_working: Duration,
    /// Green: working days.
    pub green_working_days: u32,
}

impl Default for DeadlinePolicy {
    fn default() -> Self {
        Self {
            red: Duration::hours(1),
            amber_working: Duration::hours(4),
            green_working_days: 1,
        }
    }
}

/// How long an alert may wait in triage (no body found) before kinlink on-call is paged, by
/// priority. Wall-clock time: on-call works round the clock, and a red missing-child alert in
/// triage must not wait for Monday.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriageSla {
    pub red: Duration,
    pub amber: Duration,
    pub green: Duration,
}

impl Default for TriageSla {
    fn default() -> Self {
        Self {
            red: Duration::minutes(15),
            amber: Duration::hours(1),
            green: Duration::hours(4),
        }
    }
}

impl TriageSla {
    /// The same wait for every priority.
    pub fn flat(wait: Duration) -> Self {
        Self {
            red: wait,
            amber: wait,
            green: wait,
        }
    }

    pub fn for_rag(&self, rag: Rag) -> Duration {
        match rag {
            Rag::Red => self.red,
            Rag::Amber => self.amber,
            Rag::Green => self.green,
        }
    }
}

/// The working calendar: working hours and bank holidays.
#[derive(Debug, Clone)]
pub struct WorkingCalendar {
    holidays: BTreeSet<NaiveDate>,
    opens: NaiveTime,
    closes: NaiveTime,
}

impl WorkingCalendar {
    /// England and Wales bank holidays as shipped, 09:00–17:00.
    pub fn england_and_wales() -> Result<Self, Error> {
        Self::from_csv(ENGLAND_AND_WALES_CSV)
    }

    /// Scotland's bank holidays as shipped, 09:00–17:00.
    pub fn scotland() -> Result<Self, Error> {
        Self::from_csv(SCOTLAND_CSV)
    }

    /// Northern Ireland's bank holidays as shipped, 09:00–17:00.
    pub fn northern_ireland() -> Result<Self, Error> {
        Self::from_csv(NORTHERN_IRELAND_CSV)
    }

    /// A calendar from a `date,name` list of bank holidays (with a header line), 09:00–17:00.
    pub fn from_csv(text: &str) -> Result<Self, Error> {
        let mut holidays = BTreeSet::new();
        for (index, line) in text.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let date = line.split(',').next().unwrap_or_default();
            let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .map_err(|_| Error::BankHolidays { line: index + 1 })?;
            holidays.insert(date);
        }
        Ok(Self {
            holidays,
            opens: NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default(),
            closes: NaiveTime::from_hms_opt(17, 0, 0).unwrap_or_default(),
        })
    }

    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && !self.holidays.contains(&date)
    }

    /// The deadline for an alert raised at `at` with priority `rag`.
    pub fn deadline(&self, at: DateTime<Utc>, rag: Rag, policy: &DeadlinePolicy) -> DateTime<Utc> {
        match rag {
            Rag::Red => at + policy.red,
            Rag::Amber => self.add_working_time(at, policy.amber_working),
            Rag::Green => self.add_working_time(
                at,
                self.working_day() * i32::try_from(policy.green_working_days).unwrap_or(1),
            ),
        }
    }

    fn working_day(&self) -> Duration {
        self.closes - self.opens
    }

    /// Adds `amount` of working time to `at`, skipping evenings, weekends and bank holidays.
    pub fn add_working_time(&self, at: DateTime<Utc>, amount: Duration) -> DateTime<Utc> {
        let mut local = to_uk_local(at);
        let mut remaining = amount;
        // Bounded: a year of days is far more than any policy asks for.
        for _ in 0..366 {
            let date = local.date();
            if self.is_working_day(date) {
                let opens = date.and_time(self.opens);
                let closes = date.and_time(self.closes);
                let start = local.max(opens);
                if start < closes {
                    let available = closes - start;
                    if remaining <= available {
                        return from_uk_local(start + remaining);
                    }
                    remaining -= available;
                }
            }
            local = (date + Duration::days(1)).and_time(self.opens);
        }
        from_uk_local(local)
    }
}

/// The working calendars of the UK's nations: a body's deadlines skip its own nation's bank
/// holidays.
#[derive(Debug, Clone)]
pub struct Calendars {
    england_and_wales: WorkingCalendar,
    scotland: WorkingCalendar,
    northern_ireland: WorkingCalendar,
}

impl Calendars {
    /// The calendars shipped with kinlink.
    pub fn shipped() -> Result<Self, Error> {
        Ok(Self {
            england_and_wales: WorkingCalendar::england_and_wales()?,
            scotland: WorkingCalendar::scotland()?,
            northern_ireland: WorkingCalendar::northern_ireland()?,
        })
    }

    /// The calendar of a nation as the authority register names it (`England`, `Wales`,
    /// `Scotland`, `Northern Ireland`); anything else (a triage item with no body yet) uses
    /// England and Wales'.
    pub fn for_nation(&self, nation: &str) -> &WorkingCalendar {
        match nation {
            "Scotland" => &self.scotland,
            "Northern Ireland" => &self.northern_ireland,
            _ => &self.england_and_wales,
        }
    }
}

/// Start of British Summer Time in `year`: 01:00 UTC on the last Sunday of March.
fn bst_start(year: i32) -> DateTime<Utc> {
    last_sunday_0100_utc(year, 3)
}

/// End of British Summer Time in `year`: 01:00 UTC on the last Sunday of October.
fn bst_end(year: i32) -> DateTime<Utc> {
    last_sunday_0100_utc(year, 10)
}

fn last_sunday_0100_utc(year: i32, month: u32) -> DateTime<Utc> {
    let last_day = NaiveDate::from_ymd_opt(year, month + 1, 1)
        .and_then(|d| d.pred_opt())
        .unwrap_or_default();
    let back = last_day.weekday().num_days_from_sunday();
    let sunday = last_day - Duration::days(i64::from(back));
    Utc.from_utc_datetime(&sunday.and_hms_opt(1, 0, 0).unwrap_or_default())
}

fn uk_offset(at: DateTime<Utc>) -> Duration {
    if at >= bst_start(at.year()) && at < bst_end(at.year()) {
        Duration::hours(1)
    } else {
        Duration::zero()
    }
}

fn to_uk_local(at: DateTime<Utc>) -> chrono::NaiveDateTime {
    (at + uk_offset(at)).naive_utc()
}

fn from_uk_local(local: chrono::NaiveDateTime) -> DateTime<Utc> {
    // Working hours never fall in the 01:00–02:00 change-over, so the offset is unambiguous.
    let guess = Utc.from_utc_datetime(&local);
    guess - uk_offset(guess - Duration::hours(1))
}

/// The time left until `deadline_ms`, in words a person reads at a glance: "45 minutes left",
/// "3 hours 20 minutes left", "2 days left", or "overdue by 1 hour 5 minutes". Whole minutes,
/// rounded down; under a minute either side reads "due now".
pub fn time_left_in_words(now_ms: i64, deadline_ms: i64) -> String {
    let minutes = (deadline_ms - now_ms) / 60_000;
    if minutes == 0 {
        return "due now".to_owned();
    }
    let span = span_in_words(minutes.unsigned_abs());
    if minutes > 0 {
        format!("{span} left")
    } else {
        format!("overdue by {span}")
    }
}

fn span_in_words(minutes: u64) -> String {
    fn unit(n: u64, one: &str) -> String {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    }
    let (days, hours, mins) = (minutes / 1440, (minutes % 1440) / 60, minutes % 60);
    match (days, hours, mins) {
        (0, 0, m) => unit(m, "minute"),
        (0, h, 0) => unit(h, "hour"),
        (0, h, m) => format!("{} {}", unit(h, "hour"), unit(m, "minute")),
        (d, 0, _) => unit(d, "day"),
        (d, h, _) => format!("{} {}", unit(d, "day"), unit(h, "hour")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn time_left_reads_as_words() {
        use super::time_left_in_words as words;
        let min = 60_000;
        assert_eq!(words(0, 30_000), "due now");
        assert_eq!(words(0, 45 * min), "45 minutes left");
        assert_eq!(words(0, min), "1 minute left");
        assert_eq!(words(0, 200 * min), "3 hours 20 minutes left");
        assert_eq!(words(0, 120 * min), "2 hours left");
        assert_eq!(words(0, 2 * 1440 * min + 5 * min), "2 days left");
        assert_eq!(words(0, 1440 * min + 61 * min), "1 day 1 hour left");
        assert_eq!(words(65 * min, 0), "overdue by 1 hour 5 minutes");
    }

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[allow(clippy::panic)]
    fn calendar() -> WorkingCalendar {
        match WorkingCalendar::england_and_wales() {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn red_is_one_hour_round_the_clock() {
        let c = calendar();
        let p = DeadlinePolicy::default();
        assert_eq!(
            c.deadline(utc("2026-12-25T03:00:00Z"), Rag::Red, &p),
            utc("2026-12-25T04:00:00Z")
        );
    }

    #[test]
    fn amber_counts_working_hours_in_uk_time() {
        let c = calendar();
        let p = DeadlinePolicy::default();
        // Tuesday 15:00 GMT: 2 h left today, 2 h from Wednesday 09:00.
        assert_eq!(
            c.deadline(utc("2026-11-24T15:00:00Z"), Rag::Amber, &p),
            utc("2026-11-25T11:00:00Z")
        );
        // Friday 16:00 BST (15:00 UTC) in summer: 1 h today, 3 h on Monday from 09:00 BST.
        assert_eq!(
            c.deadline(utc("2026-07-03T15:00:00Z"), Rag::Amber, &p),
            utc("2026-07-06T11:00:00Z")
        );
        // Saturday night: starts Monday 09:00.
        assert_eq!(
            c.deadline(utc("2026-11-28T22:00:00Z"), Rag::Amber, &p),
            utc("2026-11-30T13:00:00Z")
        );
    }

    #[test]
    fn green_skips_christmas_bank_holidays() {
        let c = calendar();
        let p = DeadlinePolicy::default();
        // Thursday 24 Dec 2026, 14:00: 3 h left; Fri 25 and Mon 28 (Boxing Day substitute) are
        // bank holidays, so the remaining 5 h run on Tuesday 29th until 14:00.
        assert_eq!(
            c.deadline(utc("2026-12-24T14:00:00Z"), Rag::Green, &p),
            utc("2026-12-29T14:00:00Z")
        );
    }

    #[test]
    fn each_nation_skips_its_own_bank_holidays() -> Result<(), Error> {
        let calendars = Calendars::shipped()?;
        let p = DeadlinePolicy::default();
        // Friday 27 Nov 2026, 15:00 GMT; Monday 30 Nov is St Andrew's Day in Scotland only.
        let at = utc("2026-11-27T15:00:00Z");
        assert_eq!(
            calendars.for_nation("England").deadline(at, Rag::Amber, &p),
            utc("2026-11-30T11:00:00Z")
        );
        assert_eq!(
            calendars
                .for_nation("Scotland")
                .deadline(at, Rag::Amber, &p),
            utc("2026-12-01T11:00:00Z")
        );
        // Monday 13 July 2026 is the Twelfth's substitute day in Northern Ireland only.
        let at = utc("2026-07-10T14:00:00Z"); // Friday 15:00 BST
        assert_eq!(
            calendars
                .for_nation("Northern Ireland")
                .deadline(at, Rag::Amber, &p),
            utc("2026-07-14T10:00:00Z")
        );
        assert_eq!(
            calendars.for_nation("Wales").deadline(at, Rag::Amber, &p),
            utc("2026-07-13T10:00:00Z")
        );
        // Red runs round the clock everywhere.
        assert_eq!(
            calendars.for_nation("Scotland").deadline(at, Rag::Red, &p),
            at + Duration::hours(1)
        );
        Ok(())
    }

    #[test]
    fn bst_boundaries() {
        assert_eq!(bst_start(2026), utc("2026-03-29T01:00:00Z"));
        assert_eq!(bst_end(2026), utc("2026-10-25T01:00:00Z"));
    }
}
