//! The pure decision engine: rules, windows and decisions. No tokio, no network, no system
//! clock — time arrives as a `Timestamp` and counts arrive as readings from a store.

mod ban;
mod bucket;
mod calendar;
mod conclude;
mod decide;
mod distinct;
mod identity;
mod keys;
mod limit;
pub mod quota;
mod request;
mod response;
mod rules;
mod strikes;
mod window;

#[cfg(test)]
mod ban_tests;
#[cfg(test)]
mod concurrency_tests;
#[cfg(test)]
mod distinct_tests;
#[cfg(test)]
mod tests;

pub use ban::{Ban, BanPolicy, ban_identity, describe_window, parse_ban_identity};
pub use bucket::BucketParams;
pub use conclude::{Decision, DescriptorDecision, conclude, conclude_into};
pub use decide::{CounterUpdate, Plan, plan, plan_into};
pub use distinct::{DistinctParams, EXACT_UP_TO};
pub use identity::shard_key;
pub use limit::{Algorithm, Limit, TimeUnit, Window, WindowBounds};
pub use request::{Descriptor, Entry, LimitOverride, Request};
pub use response::{
    BodyTemplate, DEFAULT_BODY, HeaderNames, HeaderStyle, PLACEHOLDERS, QuotaHeaders,
    ResponsePolicy, Segment, TemplateError,
};
pub use rules::{
    BanTarget, Children, DomainRules, KeyBranch, Node, Policy, Rule, RuleSet, ValuePattern,
};
pub use window::{Assessment, CounterReading, Readings, assess};
