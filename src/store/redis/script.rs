//! The Lua script that applies a batch of counters atomically inside Redis, with the same
//! window rules as the memory store's `WindowState::add`, and the Rust side of its contract:
//! building a batch's KEYS/ARGV and reading its reply back into `CounterReading`s.
//!
//! The script is called by SHA (`EVALSHA`), so its source travels once per server, not once per
//! request. When Redis answers `NOSCRIPT` (after a restart, a failover or `SCRIPT FLUSH`) the
//! call is repeated as `EVAL` with the source, which runs it and caches it again in the same
//! round trip. (`SCRIPT LOAD` then `EVALSHA`, as the redis crate's `Script` does, takes two
//! round trips and fails again if another flush lands between them.)

use redis::{Cmd, ErrorKind, RedisResult, Script, ServerErrorKind, aio::ConnectionLike};

use crate::clock::Timestamp;
use crate::engine::{Algorithm, CounterReading, CounterUpdate};

/// Counts saturate here, as in the memory store. Lua numbers are doubles, exact up to 2^53, so
/// every count and window index the script handles stays exact.
pub(crate) const COUNT_MAX: u64 = (1 << 48) - 2;

/// KEYS/ARGV contract:
/// - `KEYS[i]`: the key of counter i; every key of one call hashes to one cluster slot.
/// - `ARGV[1]`, `ARGV[2]`: quotad's clock, whole seconds and the nanoseconds past them (never
///   Redis's `TIME`, so every replica and the memory store agree on windows and buckets).
/// - Then six values per counter, from `ARGV[2 + 6i - 5]`:
///   1. kind: 0 for a window counter, 1 for a token bucket, 3 for a ban read (the other five
///      values unused), 4 for a distinct counter (below);
///   2. window: the window index (from quotad's clock; calendar windows too) — bucket: the
///      emission interval in nanoseconds (2^52 or more means the bucket never admits);
///   3. hits, at most `COUNT_MAX`; 0 reads without writing;
///   4. window: TTL in milliseconds (two of the longest window lengths: the previous window
///      still counts for sliding windows, and nothing older ever does) — bucket: unused, the
///      key lives until its TAT has passed (a full bucket needs no state);
///   5. 0 to add the hits, 1 to give them back (a refund), 2 to release concurrency leases;
///   6. bucket: its capacity in hits — window: unused.
///
/// A window key holds `"<window index>:<previous>:<current>"`. Adding in the same window (or
/// one ahead: another replica's clock crossed first) counts into current; the next window
/// rotates current into previous; any other window starts afresh. A refund subtracts from the
/// window the hits went to (current, or previous once the key has rotated), never below 0, and
/// leaves other windows alone. A release (concurrency leases: one window per lease-TTL
/// generation) first rotates as an add would, then subtracts from previous, then from current,
/// never below 0. Keys are handled in KEYS order, so a key listed twice sees its first update.
///
/// A bucket key holds its theoretical arrival time as `"b:<seconds>:<nanoseconds>"`. The
/// script works in nanoseconds relative to now, which Lua's doubles hold exactly for buckets
/// up to about 100 days long (longer ones may round by a few nanoseconds). Hits are admitted
/// when `max(TAT, now) + hits × interval − now ≤ capacity × interval`; refused hits leave the
/// TAT alone.
///
/// A distinct counter's six values are: 4, its limit, hits (0 reads), the TTL in milliseconds,
/// 0 for an exact set or 1 for a HyperLogLog, and which value to add: the values follow the
/// counters' arguments, `ARGV[2 + 6 × #KEYS + n]`. Its key (one per window) is a set: a known
/// value passes, a new one is added while the set holds fewer than the limit, else refused; or
/// a HyperLogLog: `PFADD` always, refused when it changed and `PFCOUNT` passed the limit. It
/// returns `{count, 1 when refused else 0}`.
///
/// A ban key holds `"<end in Unix milliseconds>|<reason>"` and expires at that end (see
/// `bans`); a ban read writes nothing and returns `{end, 0}` (`{0, 0}` when there is none).
///
/// Returns a flat array with two values per counter: window counters give
/// `{current, previous}`; buckets give `{after + 1, before + 1}`, the TAT after and before the
/// call in nanoseconds relative to now, each at least −1 (anything at or before now is a full
/// bucket), shifted so the reply holds no negative numbers.
const SOURCE: &str = r"
local max = 281474976710654
local now_sec, now_nsec = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local base = 2 + 6 * (i - 1)
  local kind = tonumber(ARGV[base + 1])
  local hits = tonumber(ARGV[base + 3])
  local refund = ARGV[base + 5] ~= '0'
  local release = ARGV[base + 5] == '2'
  local value = nil
  if kind ~= 4 then value = redis.call('GET', key) end
  if kind == 4 then
    local limit = tonumber(ARGV[base + 2])
    local element = ARGV[2 + 6 * #KEYS + tonumber(ARGV[base + 6])]
    local count, refused = 0, 0
    if ARGV[base + 5] == '1' then
      if hits > 0 and redis.call('PFADD', key, element) == 1 then
        redis.call('PEXPIRE', key, ARGV[base + 4])
        count = redis.call('PFCOUNT', key)
        if count > limit then refused = 1 end
      else
        count = redis.call('PFCOUNT', key)
      end
    else
      count = redis.call('SCARD', key)
      if hits > 0 and redis.call('SISMEMBER', key, element) == 0 then
        if count < limit then
          redis.call('SADD', key, element)
          redis.call('PEXPIRE', key, ARGV[base + 4])
          count = count + 1
        else
          refused = 1
        end
      end
    end
    out[2 * i - 1] = count
    out[2 * i] = refused
  elseif kind == 3 then
    local ends = 0
    if value then ends = tonumber(string.match(value, '^(%d+)|')) or 0 end
    out[2 * i - 1] = ends
    out[2 * i] = 0
  elseif kind == 1 then
    local interval = tonumber(ARGV[base + 2])
    local capacity = tonumber(ARGV[base + 6])
    local before = -1
    if value then
      local s, n = string.match(value, '^b:(%d+):(%d+)$')
      if s then
        before = math.max((tonumber(s) - now_sec) * 1e9 + (tonumber(n) - now_nsec), -1)
      end
    end
    local after = before
    if refund then
      if before > 0 then after = math.max(before - hits * interval, -1) end
    elseif hits > 0 and hits <= capacity and interval < 4503599627370496 then
      local next = math.max(before, 0) + hits * interval
      if next <= capacity * interval then after = next end
    end
    if after ~= before then
      if after > 0 then
        local at = now_nsec + after
        local carry = math.floor(at / 1e9)
        redis.call('SET', key, string.format('b:%.0f:%.0f', now_sec + carry, at - carry * 1e9),
          'PX', math.max(math.ceil(after / 1e6), 1))
      else
        redis.call('DEL', key)
      end
    end
    out[2 * i - 1] = after + 1
    out[2 * i] = before + 1
  else
    local tag = tonumber(ARGV[base + 2])
    local kept, previous, current = tag, 0, 0
    local found = false
    if value then
      local t, p, c = string.match(value, '^(%d+):(%d+):(%d+)$')
      if t then
        kept, previous, current = tonumber(t), tonumber(p), tonumber(c)
        found = true
      end
    end
    if refund and not release then
      if kept == tag then
        current = math.max(current - hits, 0)
      elseif kept == tag + 1 then
        previous = math.max(previous - hits, 0)
      end
    else
      local behind = tag - kept
      if behind == 1 then
        kept, previous, current = tag, current, 0
      elseif behind ~= 0 and behind ~= -1 then
        kept, previous, current = tag, 0, 0
      end
      if release then
        local from_previous = math.min(hits, previous)
        previous = previous - from_previous
        current = math.max(current - (hits - from_previous), 0)
      else
        current = math.min(current + hits, max)
      end
    end
    if hits > 0 and (found or not refund) then
      redis.call('SET', key, string.format('%.0f:%.0f:%.0f', kept, previous, current),
        'PX', ARGV[base + 4])
    end
    out[2 * i - 1] = current
    out[2 * i] = previous
  end
end
return out
";

/// The counter script, hashed once at startup.
#[derive(Debug)]
pub(crate) struct CounterScript {
    sha1: String,
}

impl CounterScript {
    pub(crate) fn new() -> Self {
        Self {
            sha1: Script::new(SOURCE).get_hash().to_owned(),
        }
    }

    /// Runs one batch in one `EVALSHA` (one `EVAL` more after `NOSCRIPT`); flat reply.
    pub(crate) async fn run<C: ConnectionLike>(
        &self,
        connection: &mut C,
        batch: &Batch,
    ) -> RedisResult<Vec<u64>> {
        match batch
            .command("EVALSHA", &self.sha1)
            .query_async(connection)
            .await
        {
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                batch.command("EVAL", SOURCE).query_async(connection).await
            }
            result => result,
        }
    }
}

/// Emission intervals from here up mean "never admits" to the script (doubles stay exact).
const CLOSED_INTERVAL: u64 = 1 << 52;

/// The counters of one script call, and where their readings go in plan order.
#[derive(Debug)]
pub(crate) struct Batch {
    now_nanos: u64,
    keys: Vec<Vec<u8>>,
    args: Vec<u64>,
    values: Vec<Vec<u8>>,
    replies: Vec<ReplyShape>,
    positions: Vec<usize>,
}

/// How the script's two values for one counter read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyShape {
    /// `{current, previous}`; fixed windows report no previous count.
    Window { previous: bool },
    /// Arrival times relative to now, shifted by one.
    Bucket,
    /// A ban's end in Unix milliseconds.
    Ban,
}

impl ReplyShape {
    fn of(update: &CounterUpdate) -> Self {
        match update.algorithm {
            _ if update.reads_ban => ReplyShape::Ban,
            Algorithm::TokenBucket => ReplyShape::Bucket,
            Algorithm::SlidingWindow | Algorithm::Concurrency | Algorithm::Distinct => {
                ReplyShape::Window { previous: true }
            }
            Algorithm::FixedWindow => ReplyShape::Window { previous: false },
        }
    }
}

impl Batch {
    /// An empty batch for a plan made at `now`.
    pub(crate) fn new(now: Timestamp) -> Self {
        let now_nanos = now.as_nanos();
        Self {
            now_nanos,
            keys: Vec::new(),
            args: vec![now_nanos / 1_000_000_000, now_nanos % 1_000_000_000],
            values: Vec::new(),
            replies: Vec::new(),
            positions: Vec::new(),
        }
    }

    /// Adds the counter at plan position `position`; `value` is what a distinct counter adds.
    pub(crate) fn push(
        &mut self,
        position: usize,
        mut key: Vec<u8>,
        update: &CounterUpdate,
        value: &[u8],
    ) {
        let ttl_millis = (update.window_nanos / 1_000_000).saturating_mul(2).max(1);
        if update.distinct.is_some() {
            // One set per window: a new window starts empty, the old one expires.
            key.extend_from_slice(format!(":{}", update.window_index).as_bytes());
        }
        self.keys.push(key);
        let refund = match (update.refund, update.algorithm) {
            (false, _) => 0,
            (true, Algorithm::Concurrency) => 2,
            (true, _) => 1,
        };
        let hits = update.hits.min(COUNT_MAX);
        let distinct = update.distinct.as_ref().map(|distinct| {
            self.values.push(value.to_vec());
            let sketch = u64::from(!distinct.exact);
            let index = self.values.len() as u64;
            [
                4,
                u64::from(distinct.limit),
                hits,
                ttl_millis,
                sketch,
                index,
            ]
        });
        self.args.extend(match (distinct, update.bucket) {
            _ if update.reads_ban => [3, 0, 0, 0, 0, 0],
            (Some(distinct), _) => distinct,
            (None, Some(bucket)) => [
                1,
                bucket.emission_nanos.min(CLOSED_INTERVAL),
                hits,
                ttl_millis,
                refund,
                bucket.burst.min(COUNT_MAX),
            ],
            (None, None) => [0, update.window_index, hits, ttl_millis, refund, 0],
        });
        self.replies.push(ReplyShape::of(update));
        self.positions.push(position);
    }

    /// `EVAL`/`EVALSHA` of this batch; the first key decides the cluster slot it is routed to.
    fn command(&self, verb: &str, script: &str) -> Cmd {
        let mut command = redis::cmd(verb);
        command
            .arg(script)
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args)
            .arg(&self.values);
        command
    }

    /// Puts this batch's readings from `reply` into `readings` (indexed by plan position).
    pub(crate) fn scatter(
        &self,
        reply: &[u64],
        readings: &mut [CounterReading],
    ) -> Result<(), String> {
        if reply.len() != 2 * self.keys.len() {
            return Err(format!(
                "counter script returned {} values for {} counters",
                reply.len(),
                self.keys.len()
            ));
        }
        for ((pair, &shape), &position) in reply
            .chunks_exact(2)
            .zip(&self.replies)
            .zip(&self.positions)
        {
            // Bucket TATs come back relative to now, shifted by one (see the contract).
            let absolute = |shifted: u64| (self.now_nanos + shifted).saturating_sub(1);
            let reading = match shape {
                ReplyShape::Bucket => CounterReading {
                    current: absolute(pair[0]),
                    previous: absolute(pair[1]),
                },
                ReplyShape::Window { previous } => CounterReading {
                    current: pair[0],
                    previous: if previous { pair[1] } else { 0 },
                },
                ReplyShape::Ban => CounterReading {
                    current: pair[0].saturating_mul(1_000_000),
                    previous: 0,
                },
            };
            match readings.get_mut(position) {
                Some(slot) => *slot = reading,
                None => return Err(format!("counter position {position} out of range")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{self, Limit, Request, RuleSet};
    use crate::engine::{Descriptor, TimeUnit, Window};

    fn plan_updates() -> Vec<CounterUpdate> {
        let limits = [
            Limit::new(1, Window::of(TimeUnit::Minute)),
            Limit::new(1, Window::of(TimeUnit::Hour)).with_algorithm(Algorithm::SlidingWindow),
        ];
        let rules = RuleSet::per_value("d", "k", limits);
        let request = Request::new(
            "d",
            [Descriptor::from_pairs(&[("k", "v")]).with_hits(u64::MAX)],
        );
        let plan = engine::plan(&rules, &request, Timestamp::from_secs(7_200));
        plan.counters().map(|(_, update)| update.clone()).collect()
    }

    #[test]
    fn batches_carry_clamped_hits_and_two_window_ttls() {
        let mut updates = plan_updates();
        updates[1].refund = true;
        let mut batch = Batch::new(Timestamp::from_nanos(7_200_000_000_005));
        batch.push(1, b"x".to_vec(), &updates[0], b"");
        batch.push(0, b"y".to_vec(), &updates[1], b"");
        assert_eq!(
            batch.args,
            [
                7_200, 5, 0, 120, COUNT_MAX, 120_000, 0, 0, 0, 2, COUNT_MAX, 7_200_000, 1, 0
            ]
        );
        let mut readings = [CounterReading::default(); 2];
        batch.scatter(&[5, 4, 3, 2], &mut readings).unwrap();
        // Plan order restored; the fixed window reports no previous count.
        assert_eq!(
            readings[1],
            CounterReading {
                current: 5,
                previous: 0
            }
        );
        assert_eq!(
            readings[0],
            CounterReading {
                current: 3,
                previous: 2
            }
        );
        assert!(batch.scatter(&[1, 2], &mut readings).is_err());
    }

    #[test]
    fn bucket_readings_come_back_as_absolute_arrival_times() {
        let limit = Limit::new(60, Window::of(TimeUnit::Minute))
            .with_burst(std::num::NonZeroU32::new(5).unwrap());
        let rules = RuleSet::per_value("d", "k", [limit]);
        let now = Timestamp::from_nanos(1_000_000_000_123);
        let request = Request::new("d", [Descriptor::from_pairs(&[("k", "v")])]);
        let plan = engine::plan(&rules, &request, now);
        let mut batch = Batch::new(now);
        let (_, update) = plan.counters().next().unwrap();
        batch.push(0, b"b".to_vec(), update, b"");
        assert_eq!(batch.args[2..], [1, 1_000_000_000, 1, 120_000, 0, 5]);
        let mut readings = [CounterReading::default()];
        batch.scatter(&[1_000_000_001, 0], &mut readings).unwrap();
        assert_eq!(
            readings[0],
            CounterReading {
                current: now.as_nanos() + 1_000_000_000,
                previous: now.as_nanos() - 1,
            }
        );
    }
}
