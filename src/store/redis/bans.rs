//! Bans in Redis. A ban lives in its own key (named like a counter from its identity), holding
//! `"<end in Unix milliseconds>|<reason>"` and expiring at that end (a TTL from quotad's clock,
//! never Redis's, as for counters), so every replica's
//! counter script reads it on the request path (see `script`) and Redis forgets it by itself.
//! An index sorted set (`quotad:bans`, scored by end) lets operators list bans without `SCAN`,
//! which a cluster would need on every master; it is only an index — the ban key decides —
//! so an index entry left behind by a failed call is harmless and is trimmed as it ends.

use redis::Cmd;

use crate::clock::Timestamp;
use crate::engine::{Ban, parse_ban_identity};
use crate::store::StoreError;

use super::keys::{KEY_PREFIX, counter_key};
use super::store::RedisStore;

/// Sets a ban key unless it already holds a later end (`KEYS[1]`; `ARGV`: end in Unix
/// milliseconds, reason, TTL in milliseconds); returns 1 when the ban was set or extended.
const START: &str = r"
local held = redis.call('GET', KEYS[1])
local ends = held and tonumber(string.match(held, '^(%d+)|')) or 0
if tonumber(ARGV[1]) <= ends then return 0 end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
return 1
";

/// The index of bans by end.
fn index_key() -> String {
    format!("{KEY_PREFIX}bans")
}

/// A ban's index member: its domain, key and value as a JSON array (unambiguous, readable).
fn member(domain: &str, key: &str, value: &str) -> String {
    serde_json::json!([domain, key, value]).to_string()
}

fn millis_up(at: Timestamp) -> u64 {
    at.as_nanos().div_ceil(1_000_000)
}

/// The commands that start `ban` at `now`: the ban key, then its index entry.
pub(super) fn start(ban: &Ban, now: Timestamp) -> [Cmd; 2] {
    let until = millis_up(ban.until);
    let ttl = until.saturating_sub(now.as_nanos() / 1_000_000).max(1);
    let mut set = redis::cmd("EVAL");
    set.arg(START)
        .arg(1)
        .arg(counter_key(&ban.identity()))
        .arg(until)
        .arg(&ban.reason)
        .arg(ttl);
    let mut index = redis::cmd("ZADD");
    index
        .arg(index_key())
        .arg("GT")
        .arg(until)
        .arg(member(&ban.domain, &ban.key, &ban.value));
    [set, index]
}

/// Counts the index entries still in force at `now`.
pub(super) fn count(now: Timestamp) -> Cmd {
    let mut command = redis::cmd("ZCOUNT");
    command
        .arg(index_key())
        .arg(format!("({}", now.as_nanos() / 1_000_000))
        .arg("+inf");
    command
}

/// Every ban in force at `now`, read from the index and confirmed by each ban key.
pub(super) async fn list(store: &RedisStore, now: Timestamp) -> Result<Vec<Ban>, StoreError> {
    let now_millis = now.as_nanos() / 1_000_000;
    let mut trim = redis::cmd("ZREMRANGEBYSCORE");
    trim.arg(index_key()).arg("-inf").arg(now_millis);
    store.query::<redis::Value>(trim).await?;
    let mut range = redis::cmd("ZRANGE");
    range
        .arg(index_key())
        .arg(format!("({now_millis}"))
        .arg("+inf")
        .arg("BYSCORE");
    let members: Vec<String> = store.query(range).await?;
    let mut bans = Vec::with_capacity(members.len());
    for text in members {
        let Ok((domain, key, value)) = serde_json::from_str::<(String, String, String)>(&text)
        else {
            continue;
        };
        let ban = Ban {
            domain,
            key,
            value,
            reason: String::new(),
            until: now,
        };
        let mut get = redis::cmd("GET");
        get.arg(counter_key(&ban.identity()));
        let held: Option<String> = store.query(get).await?;
        // The ban key decides: a lifted or replaced ban leaves at most a stale index entry.
        let Some((ends, reason)) = held.as_deref().and_then(|held| held.split_once('|')) else {
            continue;
        };
        let Ok(ends) = ends.parse::<u64>() else {
            continue;
        };
        if ends > now_millis {
            bans.push(Ban {
                reason: reason.to_owned(),
                until: Timestamp::from_nanos(ends.saturating_mul(1_000_000)),
                ..ban
            });
        }
    }
    Ok(bans)
}

/// Lifts the ban with `identity`; whether a ban was in force.
pub(super) async fn lift(
    store: &RedisStore,
    identity: Vec<u8>,
    _now: Timestamp,
) -> Result<bool, StoreError> {
    let Some((domain, key, value)) = parse_ban_identity(&identity) else {
        return Ok(false);
    };
    let mut delete = redis::cmd("DEL");
    delete.arg(counter_key(&identity));
    // The key expires with its ban, so its existence says the ban was in force.
    let deleted: u64 = store.query(delete).await?;
    let mut unindex = redis::cmd("ZREM");
    unindex.arg(index_key()).arg(member(domain, key, value));
    store.query::<redis::Value>(unindex).await?;
    Ok(deleted > 0)
}
