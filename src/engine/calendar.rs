//! UTC calendar windows — ISO weeks (from Monday), months (from the 1st) and years — for plan
//! quotas that customers are billed on and that must not drift against the calendar.

use time::{Date, Month, OffsetDateTime};

use crate::clock::Timestamp;

use super::limit::{TimeUnit, WindowBounds};

const SECS_PER_DAY: u64 = 86_400;
const NANOS_PER_SEC: u64 = 1_000_000_000;
/// 1970-01-01 was a Thursday: Monday-based weeks start three days later than epoch weeks.
const EPOCH_WEEKDAY_OFFSET: u64 = 3;

/// The calendar window of `unit` (week, month or year) that holds `now`.
pub(crate) fn bounds(unit: TimeUnit, now: Timestamp) -> WindowBounds {
    let secs = now.as_secs();
    match unit {
        TimeUnit::Week => {
            let index = (secs / SECS_PER_DAY + EPOCH_WEEKDAY_OFFSET) / 7;
            let start_day = (index * 7).saturating_sub(EPOCH_WEEKDAY_OFFSET);
            let end_day = (index + 1) * 7 - EPOCH_WEEKDAY_OFFSET;
            from_secs(index, start_day * SECS_PER_DAY, end_day * SECS_PER_DAY)
        }
        TimeUnit::Year => {
            let year = year_month(secs).0;
            let index = u64::try_from(year - 1970).unwrap_or(0);
            from_secs(
                index,
                first_of(year, Month::January),
                first_of(year + 1, Month::January),
            )
        }
        // Only week, month and year are built as calendar windows; months are the default.
        _ => {
            let (year, month) = year_month(secs);
            let index =
                u64::try_from(year - 1970).unwrap_or(0) * 12 + u64::from(u8::from(month)) - 1;
            let (next_year, next_month) = match month {
                Month::December => (year + 1, Month::January),
                other => (year, other.next()),
            };
            from_secs(
                index,
                first_of(year, month),
                first_of(next_year, next_month),
            )
        }
    }
}

fn from_secs(index: u64, start: u64, end: u64) -> WindowBounds {
    WindowBounds {
        index,
        start: start.saturating_mul(NANOS_PER_SEC),
        end: end.saturating_mul(NANOS_PER_SEC),
    }
}

/// The UTC year and month of a Unix time (clamped to what `time` can represent).
fn year_month(secs: u64) -> (i32, Month) {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    match OffsetDateTime::from_unix_timestamp(secs) {
        Ok(moment) => (moment.year(), moment.month()),
        Err(_) => (9999, Month::December),
    }
}

/// Seconds since the epoch at 00:00 UTC on the 1st of `month` in `year`.
fn first_of(year: i32, month: Month) -> u64 {
    let day = Date::from_calendar_date(year, month, 1).map(|date| date.midnight().assume_utc());
    day.map(|moment| u64::try_from(moment.unix_timestamp()).unwrap_or(0))
        .unwrap_or(u64::MAX / NANOS_PER_SEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-01T00:00:00Z, a Monday.
    const JAN_1_2024: u64 = 1_704_067_200;

    fn secs(bounds: WindowBounds) -> (u64, u64) {
        (bounds.start / NANOS_PER_SEC, bounds.end / NANOS_PER_SEC)
    }

    #[test]
    fn december_rolls_into_january() {
        let dec_31_late = Timestamp::from_secs(JAN_1_2024 - 1);
        let december = bounds(TimeUnit::Month, dec_31_late);
        assert_eq!(secs(december), (JAN_1_2024 - 31 * SECS_PER_DAY, JAN_1_2024));
        let january = bounds(TimeUnit::Month, Timestamp::from_secs(JAN_1_2024));
        assert_eq!(january.index, december.index + 1);
        assert_eq!(secs(january).1 - secs(january).0, 31 * SECS_PER_DAY);
    }

    #[test]
    fn february_has_29_days_in_a_leap_year() {
        let feb_2024 = Timestamp::from_secs(JAN_1_2024 + 40 * SECS_PER_DAY);
        let (start, end) = secs(bounds(TimeUnit::Month, feb_2024));
        assert_eq!(end - start, 29 * SECS_PER_DAY);
        let feb_2023 = Timestamp::from_secs(JAN_1_2024 - 330 * SECS_PER_DAY);
        let (start, end) = secs(bounds(TimeUnit::Month, feb_2023));
        assert_eq!(end - start, 28 * SECS_PER_DAY);
    }

    #[test]
    fn iso_weeks_start_on_monday() {
        let wednesday = Timestamp::from_secs(JAN_1_2024 + 2 * SECS_PER_DAY + 5);
        assert_eq!(
            secs(bounds(TimeUnit::Week, wednesday)),
            (JAN_1_2024, JAN_1_2024 + 7 * SECS_PER_DAY)
        );
        let sunday_night = Timestamp::from_secs(JAN_1_2024 - 1);
        assert_eq!(secs(bounds(TimeUnit::Week, sunday_night)).1, JAN_1_2024);
    }

    #[test]
    fn years_follow_the_calendar_including_leap_years() {
        let mid_2024 = Timestamp::from_secs(JAN_1_2024 + 100 * SECS_PER_DAY);
        let year = bounds(TimeUnit::Year, mid_2024);
        assert_eq!(secs(year), (JAN_1_2024, JAN_1_2024 + 366 * SECS_PER_DAY));
        assert_eq!(year.index, 54);
    }
}
