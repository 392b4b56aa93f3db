//! What a limit is: a threshold over a window of a given unit and length, counted by an algorithm.
//! Invalid limits cannot be built: the multiplier is non-zero and units are an enum.

use std::num::NonZeroU32;
use std::sync::Arc;

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

/// A window length: a unit times a non-zero multiplier ("5 per 10 minutes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    unit: TimeUnit,
    multiplier: NonZeroU32,
}

impl Window {
    /// A window of `multiplier` units.
    pub const fn new(unit: TimeUnit, multiplier: NonZeroU32) -> Self {
        Self { unit, multiplier }
    }

    /// A window of exactly one unit.
    pub const fn of(unit: TimeUnit) -> Self {
        Self {
            unit,
            multiplier: NonZeroU32::MIN,
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

    /// Length of the window in nanoseconds (saturating; no real window comes close).
    pub const fn nanos(self) -> u64 {
        self.unit
            .seconds()
            .saturating_mul(self.multiplier.get() as u64)
            .saturating_mul(1_000_000_000)
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
}

impl Algorithm {
    /// The snake_case name used in YAML and output.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::SlidingWindow => "sliding_window",
        }
    }

    /// Parses an algorithm name as written in YAML.
    pub fn parse(name: &str) -> Option<Algorithm> {
        [Algorithm::FixedWindow, Algorithm::SlidingWindow]
            .into_iter()
            .find(|algorithm| algorithm.name() == name)
    }

    /// A one-byte tag that keeps counters of different algorithms apart.
    pub(crate) const fn tag(self) -> u8 {
        match self {
            Algorithm::FixedWindow => b'f',
            Algorithm::SlidingWindow => b's',
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
        }
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
