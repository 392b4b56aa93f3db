//! What quotad tells one Envoy stream about one bucket, and what the rules and counters say
//! about that bucket right now. Durations are whole seconds where Envoy reads whole seconds:
//! Envoy 1.40 takes only the `seconds` of `assignment_time_to_live` (a TTL under one second
//! would expire at once) and of a token bucket's `fill_interval` (a zero would divide by zero).

use std::time::Duration;

use super::settings::NoMatch;

/// How often Envoy 1.40 reports every bucket, whatever `reporting_interval` says (measured).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// TTL of an assignment that only the next report can change (unlimited and unmatched buckets,
/// a stream waiting for its share): two reports, so one late report does not let it lapse.
pub const UNTIL_NEXT_REPORT: Duration = Duration::from_secs(2 * REPORT_INTERVAL.as_secs());

/// The longest TTL ever sent, so grants made before a quotad restart (whose ledger is then
/// gone) stop counting within a minute even on day-long windows.
pub const MAX_TTL: Duration = Duration::from_secs(60);

/// A token bucket gains one token per this interval: longer than [`MAX_TTL`], so no grant
/// refills before it expires. It is the same in every grant on purpose: Envoy 1.40 keeps a
/// bucket's state when a new grant has equal `max_tokens`, `tokens_per_fill` and
/// `fill_interval.nanos` (the seconds are not compared), so a varying interval could leave a
/// fast-refilling bucket in place under a slow grant.
pub const FILL_INTERVAL: Duration = Duration::from_secs(MAX_TTL.as_secs() + 1);

/// What the rules and the shared counters say about one bucket right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// No rule matches the bucket: the domain's `no_match` answer.
    Unmatched(NoMatch),
    /// The rule never rejects (unlimited, or in shadow mode).
    Unlimited,
    /// A limited rule: hits still allowed in the window (usage already reported included), and
    /// the time until the window resets.
    Limited {
        /// The limit's threshold (a reload that changes it starts a new series of readings).
        limit: u64,
        /// Hits the limit still allows.
        remaining: u64,
        /// Time until the limit resets (the next window).
        until_reset: Duration,
    },
}

/// Why a bucket is being decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The stream just reported the bucket: its usage until now is in the [`Standing`].
    Report,
    /// No report (the decision point passed, or the rules were swapped): the stream's usage
    /// since its last report is unknown, at most what it was granted since then.
    Unprompted,
}

/// One bucket's assignment, as the stream will send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    /// Admit every request until `ttl` (`blanket_rule: ALLOW_ALL`).
    AllowAll {
        /// `assignment_time_to_live`, whole seconds.
        ttl: Duration,
    },
    /// Refuse every request until `ttl` (`blanket_rule: DENY_ALL`).
    DenyAll {
        /// `assignment_time_to_live`, whole seconds.
        ttl: Duration,
    },
    /// Admit up to `max_tokens` requests until `ttl`: the bucket starts full and gains one
    /// token per [`FILL_INTERVAL`], longer than any TTL, so it never refills in time.
    TokenBucket {
        /// Requests this stream may admit before the assignment expires.
        max_tokens: u32,
        /// `assignment_time_to_live`, whole seconds.
        ttl: Duration,
    },
    /// Forget the bucket (its rule was removed); Envoy rebuilds it on the next request.
    Abandon,
}

/// The kind of an [`Assignment`], for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignmentKind {
    /// [`Assignment::AllowAll`].
    AllowAll,
    /// [`Assignment::DenyAll`].
    DenyAll,
    /// [`Assignment::TokenBucket`].
    TokenBucket,
    /// [`Assignment::Abandon`].
    Abandon,
}

impl AssignmentKind {
    /// Every kind, in a fixed order.
    pub const ALL: [AssignmentKind; 4] = [
        AssignmentKind::AllowAll,
        AssignmentKind::DenyAll,
        AssignmentKind::TokenBucket,
        AssignmentKind::Abandon,
    ];

    /// The `kind` label value.
    pub const fn name(self) -> &'static str {
        match self {
            AssignmentKind::AllowAll => "allow_all",
            AssignmentKind::DenyAll => "deny_all",
            AssignmentKind::TokenBucket => "token_bucket",
            AssignmentKind::Abandon => "abandon",
        }
    }
}

impl Assignment {
    /// Which kind of assignment this is.
    pub const fn kind(&self) -> AssignmentKind {
        match self {
            Assignment::AllowAll { .. } => AssignmentKind::AllowAll,
            Assignment::DenyAll { .. } => AssignmentKind::DenyAll,
            Assignment::TokenBucket { .. } => AssignmentKind::TokenBucket,
            Assignment::Abandon => AssignmentKind::Abandon,
        }
    }

    /// The assignment's TTL (`None` for [`Assignment::Abandon`]).
    pub const fn ttl(&self) -> Option<Duration> {
        match self {
            Assignment::AllowAll { ttl }
            | Assignment::DenyAll { ttl }
            | Assignment::TokenBucket { ttl, .. } => Some(*ttl),
            Assignment::Abandon => None,
        }
    }
}

/// One bucket's assignment and when the stream must decide it again (at the latest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decided {
    /// What to send.
    pub assignment: Assignment,
    /// Time until the next decision point: the TTL, or the window reset when sooner.
    pub decide_again_in: Duration,
}

/// The TTL Envoy will honour for an assignment meant to last `wanted`: whole seconds, rounded
/// down (never past the decision point), at least one second and at most [`MAX_TTL`].
pub fn whole_seconds_ttl(wanted: Duration) -> Duration {
    Duration::from_secs(wanted.as_secs().clamp(1, MAX_TTL.as_secs()))
}
