//! One descriptor's `rate_limit` / `rate_limits` to an engine `Policy`: unit, threshold,
//! multiplier, algorithm, `unlimited`, names and `replaces`, each checked and every problem
//! reported, including two limits that would share one counter.

use std::num::NonZeroU32;
use std::sync::Arc;

use serde_saphyr::Spanned;

use super::ban;
use super::compile::Ctx;
use super::concurrency;
use super::model::{RawDescriptor, RawLimit};
use crate::engine::{Algorithm, Limit, Policy, TimeUnit, Window};

const UNITS: &str = "one of second, minute, hour, day, week, month, year";
const ALGORITHMS: &str = "one of fixed_window, sliding_window, token_bucket, concurrency, distinct";

/// One limit entry after checking.
enum Compiled {
    Unlimited,
    Limited(Limit),
}

/// Parses an algorithm name, reporting an unknown one.
pub(crate) fn algorithm(
    ctx: &mut Ctx<'_>,
    written: &Spanned<String>,
    field: &str,
) -> Option<Algorithm> {
    let parsed = Algorithm::parse(&written.value);
    if parsed.is_none() {
        let found = format!("{:?}", written.value);
        ctx.report(written.referenced, field, ALGORITHMS, found);
    }
    parsed
}

/// What a limit inherits from where it is written: the domain's algorithm and the descriptor
/// keys from the top of the tree down to its rule (a `ban` may name any of them).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// The algorithm of limits that name none.
    pub(crate) algorithm: Algorithm,
    /// Descriptor keys on the rule's path, outermost first.
    pub(crate) path_keys: &'a [&'a str],
}

/// The descriptor's policy: `None` when it has no limit, or when one of its limits is invalid
/// (the problem is reported and the file will not load).
pub(crate) fn policy(
    ctx: &mut Ctx<'_>,
    raw: &RawDescriptor,
    field: &str,
    default: Context<'_>,
) -> Option<Policy> {
    match (&raw.rate_limit, &raw.rate_limits) {
        (None, None) => None,
        (Some(one), Some(many)) => {
            ctx.report(
                many.referenced,
                format!("{field}.rate_limits"),
                "either rate_limit or rate_limits, not both",
                "both",
            );
            // Checked anyway so their own problems show up in the same run.
            limit(ctx, one, &format!("{field}.rate_limit"), default);
            several(ctx, many, field, default);
            None
        }
        (Some(one), None) => match limit(ctx, one, &format!("{field}.rate_limit"), default)? {
            Compiled::Unlimited => Some(Policy::Unlimited),
            Compiled::Limited(limit) => Some(Policy::Limited(Box::new([limit]))),
        },
        (None, Some(many)) => several(ctx, many, field, default),
    }
}

/// Compiles `rate_limits`, which must be non-empty and must not give two limits one counter.
fn several(
    ctx: &mut Ctx<'_>,
    many: &Spanned<Vec<Spanned<RawLimit>>>,
    field: &str,
    default: Context<'_>,
) -> Option<Policy> {
    let list_field = format!("{field}.rate_limits");
    if many.value.is_empty() {
        ctx.report(
            many.referenced,
            list_field,
            "at least one limit",
            "an empty list",
        );
        return None;
    }
    let mut valid = true;
    let mut limits: Vec<(usize, Limit)> = Vec::new();
    for (index, raw) in many.value.iter().enumerate() {
        let entry = format!("{list_field}[{index}]");
        match limit(ctx, raw, &entry, default) {
            None => valid = false,
            Some(Compiled::Unlimited) if many.value.len() == 1 => return Some(Policy::Unlimited),
            Some(Compiled::Unlimited) => {
                valid = false;
                let at = raw
                    .value
                    .unlimited
                    .as_ref()
                    .map_or(raw.referenced, |u| u.referenced);
                ctx.report(
                    at,
                    format!("{entry}.unlimited"),
                    "unlimited only as a descriptor's single limit",
                    "unlimited: true next to other limits",
                );
            }
            Some(Compiled::Limited(limit)) => {
                // Counters are keyed by rule, window and algorithm, so a twin would double-count.
                let twin = limits.iter().find(|(_, other)| {
                    other.window == limit.window && other.algorithm == limit.algorithm
                });
                if let Some((first, _)) = twin {
                    valid = false;
                    let window = limit.window;
                    ctx.report(
                        raw.referenced,
                        entry,
                        "a window and algorithm no other limit on this descriptor uses",
                        format!(
                            "{} {} {}, same as {list_field}[{first}]",
                            window.multiplier(),
                            window.unit().name(),
                            limit.algorithm.name()
                        ),
                    );
                }
                limits.push((index, limit));
            }
        }
    }
    let limits: Box<[Limit]> = limits.into_iter().map(|(_, limit)| limit).collect();
    valid.then_some(Policy::Limited(limits))
}

/// Checks one limit entry; `None` when anything in it is wrong (each problem reported).
fn limit(
    ctx: &mut Ctx<'_>,
    raw: &Spanned<RawLimit>,
    field: &str,
    context: Context<'_>,
) -> Option<Compiled> {
    let at = raw.referenced;
    let raw = &raw.value;
    let errors_before = ctx.error_count();
    let algorithm = match &raw.algorithm {
        Some(written) => algorithm(ctx, written, &format!("{field}.algorithm")),
        None => Some(context.algorithm),
    };
    let ban = raw.ban.as_ref().map(|written| {
        let field = format!("{field}.ban");
        (
            written.referenced,
            ban::policy(ctx, written, &field, context.path_keys),
        )
    });
    let name = match &raw.name {
        Some(name) if name.value.is_empty() => {
            let field = format!("{field}.name");
            ctx.report(name.referenced, field, "a non-empty limit name", "\"\"");
            None
        }
        other => other.as_ref().map(|name| name.value.as_str()),
    };
    let replaces = replaces(ctx, raw, field, name);
    if let Some(algorithm) = algorithm.filter(|a| *a != Algorithm::Concurrency) {
        concurrency::reject_lease_fields(ctx, raw, field, algorithm);
    }
    if raw
        .unlimited
        .as_ref()
        .is_some_and(|unlimited| unlimited.value)
    {
        for (key, written) in raw.window_fields() {
            if let Some((at, value)) = written {
                let expected = format!("no {key} when unlimited is true");
                ctx.report(at, format!("{field}.{key}"), expected, value);
            }
        }
        if let Some((at, _)) = ban {
            let expected = "no ban when unlimited is true";
            ctx.report(at, format!("{field}.ban"), expected, "a ban");
        }
        return (ctx.error_count() == errors_before).then_some(Compiled::Unlimited);
    }
    if algorithm == Some(Algorithm::Concurrency) {
        let (max_in_flight, lease) = concurrency::lease_limit(ctx, at, raw, field)?;
        let replaces = replaces?;
        return (ctx.error_count() == errors_before).then(|| {
            let limit = Limit::concurrency(max_in_flight, lease);
            Compiled::Limited(Limit {
                name: name.map(Arc::from),
                replaces,
                soft: raw.soft.unwrap_or(false),
                ban: ban.and_then(|(_, ban)| ban).map(Arc::new),
                ..limit
            })
        });
    }
    let unit = match &raw.unit {
        None => {
            ctx.report(at, format!("{field}.unit"), UNITS, "nothing");
            None
        }
        Some(unit) => {
            let parsed = TimeUnit::parse(&unit.value);
            if parsed.is_none() {
                let found = format!("{:?}", unit.value);
                ctx.report(unit.referenced, format!("{field}.unit"), UNITS, found);
            }
            parsed
        }
    };
    let requests = raw.requests_per_unit.as_ref().map(|r| r.value);
    if requests.is_none() {
        let expected = "a number of requests from 0 to 4294967295, or unlimited: true";
        ctx.report(
            at,
            format!("{field}.requests_per_unit"),
            expected,
            "nothing",
        );
    }
    let multiplier = match &raw.unit_multiplier {
        None => Some(NonZeroU32::MIN),
        Some(written) => {
            let multiplier = NonZeroU32::new(written.value);
            if multiplier.is_none() {
                let field = format!("{field}.unit_multiplier");
                ctx.report(written.referenced, field, "a multiplier of at least 1", "0");
            }
            multiplier
        }
    };
    let (Some(algorithm), Some(unit), Some(requests), Some(multiplier), Some(replaces)) =
        (algorithm, unit, requests, multiplier, replaces)
    else {
        return None;
    };
    let window = window(ctx, raw, field, unit, multiplier, algorithm)?;
    let burst = burst(ctx, raw, field, algorithm);
    if algorithm == Algorithm::Distinct && context.path_keys.len() < 2 {
        let expected = "algorithm distinct on a nested descriptor: it counts distinct values of \
                        the rule's own key per the keys above it";
        let found = format!("a top-level descriptor ({})", context.path_keys.join(", "));
        let at = raw
            .algorithm
            .as_ref()
            .map_or(at, |written| written.referenced);
        ctx.report(at, format!("{field}.algorithm"), expected, found);
    }
    if ctx.error_count() != errors_before {
        return None;
    }
    Some(Compiled::Limited(Limit {
        requests_per_unit: requests,
        window,
        algorithm,
        name: name.map(Arc::from),
        replaces,
        soft: raw.soft.unwrap_or(false),
        burst,
        ban: ban.and_then(|(_, ban)| ban).map(Arc::new),
    }))
}

/// A token bucket's `burst`: at least 1, and only on token buckets (windows have no burst).
fn burst(
    ctx: &mut Ctx<'_>,
    raw: &RawLimit,
    field: &str,
    algorithm: Algorithm,
) -> Option<NonZeroU32> {
    let written = raw.burst.as_ref()?;
    let field = format!("{field}.burst");
    if algorithm != Algorithm::TokenBucket {
        let found = format!("burst with algorithm {}", algorithm.name());
        ctx.report(
            written.referenced,
            field,
            "burst only with algorithm token_bucket",
            found,
        );
        return None;
    }
    let burst = NonZeroU32::new(written.value);
    if burst.is_none() {
        ctx.report(written.referenced, field, "a burst of at least 1", "0");
    }
    burst
}

/// The limit's window: epoch-aligned, or a calendar week, month or year when `calendar: true`
/// (one unit long, counted in fixed windows).
fn window(
    ctx: &mut Ctx<'_>,
    raw: &RawLimit,
    field: &str,
    unit: TimeUnit,
    multiplier: NonZeroU32,
    algorithm: Algorithm,
) -> Option<Window> {
    let Some(calendar) = raw.calendar.as_ref().filter(|calendar| calendar.value) else {
        return Some(Window::new(unit, multiplier));
    };
    let field = format!("{field}.calendar");
    let Some(window) = Window::calendar(unit) else {
        let found = format!("calendar: true with unit {}", unit.name());
        ctx.report(
            calendar.referenced,
            field,
            "calendar: true only with unit week, month or year",
            found,
        );
        return None;
    };
    if multiplier.get() != 1 {
        let found = format!("unit_multiplier: {multiplier}");
        ctx.report(
            calendar.referenced,
            field,
            "calendar windows without unit_multiplier",
            found,
        );
        return None;
    }
    if algorithm != Algorithm::FixedWindow {
        let found = format!("algorithm: {}", algorithm.name());
        ctx.report(
            calendar.referenced,
            field,
            "calendar windows with algorithm fixed_window",
            found,
        );
        return None;
    }
    Some(window)
}

/// Checks `replaces`: every entry names another limit.
fn replaces(
    ctx: &mut Ctx<'_>,
    raw: &RawLimit,
    field: &str,
    own_name: Option<&str>,
) -> Option<Box<[Arc<str>]>> {
    let list = raw.replaces.as_deref().unwrap_or_default();
    let mut names = Vec::with_capacity(list.len());
    let mut valid = true;
    for (index, entry) in list.iter().enumerate() {
        let field = format!("{field}.replaces[{index}].name");
        match &entry.value.name {
            None => {
                valid = false;
                ctx.report(
                    entry.referenced,
                    field,
                    "the name of another limit",
                    "nothing",
                );
            }
            Some(name) if name.value.is_empty() => {
                valid = false;
                ctx.report(name.referenced, field, "the name of another limit", "\"\"");
            }
            Some(name) if Some(name.value.as_str()) == own_name => {
                valid = false;
                let found = format!("{:?}, this limit's own name", name.value);
                ctx.report(name.referenced, field, "the name of another limit", found);
            }
            Some(name) => names.push(Arc::from(name.value.as_str())),
        }
    }
    valid.then(|| names.into_boxed_slice())
}
