//! `algorithm: concurrency` limits: `max_in_flight` leases at once, each forgotten after
//! `lease_ttl` if its release never arrives. Window fields make no sense for them and are
//! reported; the TTL becomes the limit's window, so counter identity, key TTLs and the sweeper
//! work unchanged.

use std::num::NonZeroU32;

use serde_saphyr::Location;

use super::compile::Ctx;
use super::model::RawLimit;
use crate::engine::{Algorithm, TimeUnit, Window};

/// How long a lease lives when `lease_ttl` is not set: longer than any ordinary request.
pub(crate) const DEFAULT_LEASE_TTL: Window =
    Window::new(TimeUnit::Minute, NonZeroU32::MIN.saturating_add(4));

pub(crate) const TTL_EXPECTED: &str = "a duration such as 30s, 5m, 1h or 1d (at least 1)";

/// Reports `max_in_flight` and `lease_ttl` on a limit that is not a concurrency limit.
pub(crate) fn reject_lease_fields(
    ctx: &mut Ctx<'_>,
    raw: &RawLimit,
    field: &str,
    algorithm: Algorithm,
) {
    let lease_fields = [
        (
            "max_in_flight",
            raw.max_in_flight
                .as_ref()
                .map(|m| (m.referenced, m.value.to_string())),
        ),
        (
            "lease_ttl",
            raw.lease_ttl
                .as_ref()
                .map(|t| (t.referenced, format!("{:?}", t.value))),
        ),
    ];
    for (key, written) in lease_fields {
        if let Some((at, value)) = written {
            let expected = format!("{key} only with algorithm concurrency");
            let found = format!("{key}: {value} with algorithm {}", algorithm.name());
            ctx.report(at, format!("{field}.{key}"), expected, found);
        }
    }
}

/// The threshold and lease window of a concurrency limit; `None` when anything is wrong
/// (every problem reported).
pub(crate) fn lease_limit(
    ctx: &mut Ctx<'_>,
    at: Location,
    raw: &RawLimit,
    field: &str,
) -> Option<(u32, Window)> {
    let mut valid = true;
    for (key, written) in raw.window_fields() {
        if let Some((at, value)) = written {
            valid = false;
            let expected =
                format!("no {key} with algorithm concurrency (use max_in_flight, lease_ttl)");
            ctx.report(at, format!("{field}.{key}"), expected, value);
        }
    }
    let max_in_flight = raw.max_in_flight.as_ref().map(|m| m.value);
    if max_in_flight.is_none() {
        let expected = "a number of requests in flight from 0 to 4294967295";
        ctx.report(at, format!("{field}.max_in_flight"), expected, "nothing");
    }
    let lease = match &raw.lease_ttl {
        None => Some(DEFAULT_LEASE_TTL),
        Some(written) => {
            let parsed = parse_ttl(&written.value);
            if parsed.is_none() {
                let found = format!("{:?}", written.value);
                ctx.report(
                    written.referenced,
                    format!("{field}.lease_ttl"),
                    TTL_EXPECTED,
                    found,
                );
            }
            parsed
        }
    };
    let (Some(max_in_flight), Some(lease)) = (max_in_flight, lease) else {
        return None;
    };
    valid.then_some((max_in_flight, lease))
}

/// `30s`, `5m`, `1h`, `1d` as a window of that many units.
pub(crate) fn parse_ttl(text: &str) -> Option<Window> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let amount = NonZeroU32::new(text[..split].parse().ok()?)?;
    let unit = match &text[split..] {
        "s" => TimeUnit::Second,
        "m" => TimeUnit::Minute,
        "h" => TimeUnit::Hour,
        "d" => TimeUnit::Day,
        _ => return None,
    };
    Some(Window::new(unit, amount))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_whole_units() {
        let minutes = parse_ttl("5m").expect("5m");
        assert_eq!(minutes.nanos(), 300_000_000_000);
        assert_eq!(parse_ttl("90s").map(Window::nanos), Some(90_000_000_000));
        assert_eq!(parse_ttl("1d").map(Window::unit), Some(TimeUnit::Day));
        for bad in [
            "",
            "5",
            "0s",
            "m",
            "5 m",
            "1.5h",
            "5ms",
            "-1s",
            "99999999999s",
        ] {
            assert_eq!(parse_ttl(bad), None, "{bad:?}");
        }
    }
}
