//! What a limit is: a threshold over a window of a given unit and length, counted by an algorithm.
//! Invalid limits cannot be built: the multiplier is non-zero and units are an enum.

use std::num::NonZeroU32;
use std::sync::Arc;

use crate::clock::Timestamp;

use super::ban::BanPolicy;
use super::bucket::BucketParams;
use super::calendar;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The time unit of a limit, as envoyproxy/ratelimit names them (month = 30 days, year = 365 days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    /// One second.
    Second,
    /// Sixty seconds.
    Minute,
    /// 3,600 seconds.
    Hour,
    /// 86,400 seconds.
    Day,
    /// Seven days.
    Week,
    /// Thirty days (envoyproxy/ratelimit's definition, not a calendar month).
    Month,
    /// 365 days (envoyproxy/ratelimit's definition, not a calendar year).
    Year,
}

impl TimeUnit {
    /// Every unit, shortest first.
    pub const ALL: [TimeUnit; 7] = [
        TimeUnit::Second,
        TimeUnit::Minute,
        TimeUnit::Hour,
        TimeUnit::Day,
        TimeUnit::Week,
        TimeUnit::Month,
        TimeUnit::Year,
    ];

    /// Length of one unit in seconds.
    pub const fn seconds(self) -> u64 {
        match self {
            TimeUnit::Second => 1,
            TimeUnit::Minute => 60,
            TimeUnit::Hour => 3_600,
            TimeUnit::Day => 86_400,
            TimeUnit::Week => 7 * 86_400,
            TimeUnit::Month => 30 * 86_400,
            TimeUnit::Year => 365 * 86_400,
        }
    }

    /// The lower-case name used in YAML and output.
    pub const fn name(self) -> &'static str {
        match self {
            TimeUnit::Second => "second",
            TimeUnit::Minute => "minute",
            TimeUnit::Hour => "hour",
            TimeUnit::Day => "day",
            TimeUnit::Week => "week",
            TimeUnit::Month => "month",
            TimeUnit::Year => "year",
        }
    }

    /// Parses a unit name case-insensitively, as envoyproxy/ratelimit does.
    pub fn parse(name: &str) -> Option<TimeUnit> {
        TimeUnit::ALL
            .into_iter()
            .find(|unit| unit.name().eq_ignore_ascii_case(name))
    }
}

/// A window length: a unit times a non-zero multiplier ("5 per 10 minutes"), aligned to the
/// epoch, or a calendar week, month or year in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    unit: TimeUnit,
    multiplier: NonZeroU32,
    calendar: bool,
}

/// Where the window holding a given moment starts and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowBounds {
    /// A number that grows by one from each window to the next.
    pub index: u64,
    /// First nanosecond of the window (since the Unix epoch).
    pub start: u64,
    /// First nanosecond after the window.
    pub end: u64,
}

impl Window {
    /// A window of `multiplier` units, aligned to the Unix epoch.
    pub const fn new(unit: TimeUnit, multiplier: NonZeroU32) -> Self {
        Self {
            unit,
            multiplier,
            calendar: false,
        }
    }

    /// A window of exactly one unit, aligned to the Unix epoch.
    pub const fn of(unit: TimeUnit) -> Self {
        Self::new(unit, NonZeroU32::MIN)
    }

    /// A UTC calendar window: ISO weeks from Monday, months from the 1st, years from 1 January;
    /// `None` for units without a calendar meaning.
    pub const fn calendar(unit: TimeUnit) -> Option<Self> {
        match unit {
            TimeUnit::Week | TimeUnit::Month | TimeUnit::Year => Some(Self {
                unit,
                multiplier: NonZeroU32::MIN,
                calendar: true,
            }),
            _ => None,
        }
    }

    /// Whether the window follows the calendar rather than the epoch.
    pub const fn is_calendar(self) -> bool {
        self.calendar
    }

    /// The window that holds `now`.
    pub fn bounds(self, now: Timestamp) -> WindowBounds {
        if self.calendar {
            return calendar::bounds(self.unit, now);
        }
        let length = self.nanos();
        let index = now.as_nanos() / length;
        let start = index * length;
        WindowBounds {
            index,
            start,
            end: start.saturating_add(length),
        }
    }

    /// The unit the window is measured in.
    pub const fn unit(self) -> TimeUnit {
        self.unit
    }

    /// How many units the window spans.
    pub const fn multiplier(self) -> NonZeroU32 {
        self.multiplier
    }

    /// Length of the window in nanoseconds (saturating; no real window comes close); for
    /// calendar windows, the longest one (31-day months, 366-day years).
    pub const fn nanos(self) -> u64 {
        let seconds = match (self.calendar, self.unit) {
            (true, TimeUnit::Month) => 31 * 86_400,
            (true, TimeUnit::Year) => 366 * 86_400,
            _ => self.unit.seconds(),
        };
        seconds
            .saturating_mul(self.multiplier.get() as u64)
            .saturating_mul(NANOS_PER_SEC)
    }
}

/// How hits are counted against a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// Epoch-aligned fixed windows, exactly as envoyproxy/ratelimit counts.
    #[default]
    FixedWindow,
    /// A rolling window estimated from the current and previous fixed windows.
    SlidingWindow,
    /// A token bucket (GCRA): `requests_per_unit` per window as a steady rate, plus a burst.
    TokenBucket,
    /// Requests in flight: a hit acquires a lease, a refund releases one; the window is the
    /// lease TTL and `requests_per_unit` the most leases held at once (`max_in_flight`).
    Concurrency,
    /// Distinct values of the descriptor's last entry per the entries before it, per window
    /// (one API key seen from more than N addresses an hour): a hit with a value already seen
    /// passes, a new value past `requests_per_unit` is over the limit (see `distinct`).
    Distinct,
}

impl Algorithm {
    /// The snake_case name used in YAML and output.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::SlidingWindow => "sliding_window",
            Algorithm::TokenBucket => "token_bucket",
            Algorithm::Concurrency => "concurrency",
            Algorithm::Distinct => "distinct",
        }
    }

    /// Parses an algorithm name as written in YAML.
    pub fn parse(name: &str) -> Option<Algorithm> {
        [
            Algorithm::FixedWindow,
            Algorithm::SlidingWindow,
            Algorithm::TokenBucket,
            Algorithm::Concurrency,
            Algorithm::Distinct,
        ]
        .into_iter()
        .find(|algorithm| algorithm.name() == name)
    }

    /// A one-byte tag that keeps counters of different algorithms apart.
    pub(crate) const fn tag(self) -> u8 {
        match self {
            Algorithm::FixedWindow => b'f',
            Algorithm::SlidingWindow => b's',
            Algorithm::TokenBucket => b't',
            Algorithm::Concurrency => b'c',
            Algorithm::Distinct => b'd',
        }
    }
}

/// One threshold on a rule: `requests_per_unit` hits per window, counted by `algorithm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// Hits allowed per window; 0 rejects every hit.
    pub requests_per_unit: u32,
    /// The window the threshold applies to.
    pub window: Window,
    /// How hits are counted.
    pub algorithm: Algorithm,
    /// Optional name, reported in `current_limit.name` and used by `replaces`.
    pub name: Option<Arc<str>>,
    /// Names of other limits this one replaces within a request.
    pub replaces: Box<[Arc<str>]>,
    /// Measured and reported, but never rejects (`soft: true`).
    pub soft: bool,
    /// For token buckets: hits the bucket holds when full (`requests_per_unit` when unset).
    pub burst: Option<NonZeroU32>,
    /// Bans a caller that keeps exceeding this limit.
    pub ban: Option<Arc<BanPolicy>>,
}

impl Limit {
    /// A fixed-window limit of `requests_per_unit` per `window`, with no name.
    pub fn new(requests_per_unit: u32, window: Window) -> Self {
        Self {
            requests_per_unit,
            window,
            algorithm: Algorithm::FixedWindow,
            name: None,
            replaces: Box::new([]),
            soft: false,
            burst: None,
            ban: None,
        }
    }

    /// A concurrency limit: at most `max_in_flight` leases at once, each forgotten one to two
    /// `lease` windows after it was taken if its release never arrives.
    pub fn concurrency(max_in_flight: u32, lease: Window) -> Self {
        Self::new(max_in_flight, lease).with_algorithm(Algorithm::Concurrency)
    }

    /// This limit as a token bucket holding `burst` hits when full.
    pub fn with_burst(mut self, burst: NonZeroU32) -> Self {
        self.algorithm = Algorithm::TokenBucket;
        self.burst = Some(burst);
        self
    }

    /// The GCRA parameters of this limit when counted as a token bucket.
    pub fn bucket(&self) -> BucketParams {
        let emission_nanos = match self.requests_per_unit {
            0 => u64::MAX,
            // At least 1 ns, so every admitted hit moves the TAT and stays observable.
            requests => (self.window.nanos() / u64::from(requests)).max(1),
        };
        let burst = self.burst.map_or(self.requests_per_unit, NonZeroU32::get);
        BucketParams {
            emission_nanos,
            burst: u64::from(burst),
        }
    }

    /// This limit banning callers that keep exceeding it, as `policy` says.
    pub fn with_ban(mut self, policy: BanPolicy) -> Self {
        self.ban = Some(Arc::new(policy));
        self
    }

    /// This limit as a soft limit: reported, never enforced.
    pub fn soft(mut self) -> Self {
        self.soft = true;
        self
    }

    /// This limit counted by another algorithm.
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// This limit with a name.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(Arc::from(name));
        self
    }

    /// This limit replacing the limits with these names.
    pub fn replacing(mut self, names: &[&str]) -> Self {
        self.replaces = names.iter().map(|name| Arc::from(*name)).collect();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse_case_insensitively() {
        assert_eq!(TimeUnit::parse("MINUTE"), Some(TimeUnit::Minute));
        assert_eq!(TimeUnit::parse("Month"), Some(TimeUnit::Month));
        assert_eq!(TimeUnit::parse("fortnight"), None);
    }

    #[test]
    fn month_and_year_are_fixed_lengths() {
        assert_eq!(TimeUnit::Month.seconds(), 2_592_000);
        assert_eq!(TimeUnit::Year.seconds(), 31_536_000);
    }

    #[test]
    fn multiplier_windows_scale_the_unit() {
        let ten_minutes = Window::new(TimeUnit::Minute, NonZeroU32::new(10).unwrap());
        assert_eq!(ten_minutes.nanos(), 600_000_000_000);
    }
}
