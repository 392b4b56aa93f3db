//! A limit's `ban:` block: `after` excesses `within` a window ban the value of `key` (by
//! default the descriptor's own key) `for` a while. Every problem is reported with its place.

use std::num::NonZeroU32;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::compile::Ctx;
use super::concurrency::{TTL_EXPECTED, parse_ttl};
use super::model::RawBan;
use crate::engine::{BanPolicy, Window};

/// The ban a limit carries; `None` when anything is wrong (every problem reported).
/// `path_keys` are the descriptor keys from the top of the tree down to this rule's own.
pub(crate) fn policy(
    ctx: &mut Ctx<'_>,
    raw: &Spanned<RawBan>,
    field: &str,
    path_keys: &[&str],
) -> Option<BanPolicy> {
    let at = raw.referenced;
    let raw = &raw.value;
    let after = match &raw.after {
        None => {
            ctx.report(at, format!("{field}.after"), AFTER_EXPECTED, "nothing");
            None
        }
        Some(after) => {
            let parsed = NonZeroU32::new(after.value);
            if parsed.is_none() {
                ctx.report(
                    after.referenced,
                    format!("{field}.after"),
                    AFTER_EXPECTED,
                    "0",
                );
            }
            parsed
        }
    };
    let within = duration(ctx, raw.within.as_ref(), at, &format!("{field}.within"));
    let lasting = duration(ctx, raw.duration.as_ref(), at, &format!("{field}.for"));
    let own_key = path_keys.last().copied().unwrap_or_default();
    let key = match &raw.key {
        None => Some(own_key),
        Some(key) if path_keys.contains(&key.value.as_str()) => Some(key.value.as_str()),
        Some(key) => {
            let expected = format!(
                "one of the descriptor keys on this rule's path ({})",
                path_keys.join(", ")
            );
            let found = format!("{:?}", key.value);
            ctx.report(key.referenced, format!("{field}.key"), expected, found);
            None
        }
    };
    let (Some(after), Some(within), Some(lasting), Some(key)) = (after, within, lasting, key)
    else {
        return None;
    };
    let lasting = Duration::from_nanos(lasting.nanos());
    Some(BanPolicy::new(key, after, within, lasting))
}

const AFTER_EXPECTED: &str = "a number of excesses of at least 1";

/// A required duration field such as `within: 10m`.
fn duration(
    ctx: &mut Ctx<'_>,
    written: Option<&Spanned<String>>,
    block: serde_saphyr::Location,
    field: &str,
) -> Option<Window> {
    let Some(written) = written else {
        ctx.report(block, field, TTL_EXPECTED, "nothing");
        return None;
    };
    let parsed = parse_ttl(&written.value);
    if parsed.is_none() {
        let found = format!("{:?}", written.value);
        ctx.report(written.referenced, field, TTL_EXPECTED, found);
    }
    parsed
}
