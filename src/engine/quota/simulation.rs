//! The assignment policy in a simulation on a fake clock: Envoys that enforce their grants
//! exactly as Envoy 1.40 does (a token bucket that starts full, kept when a new grant has the
//! same `max_tokens`), report every 5 s and share one fixed-window counter. Checks that no
//! window admits more than the limit, that hungry Envoys use it, and that shares are fair.

use std::time::Duration;

use super::*;
use crate::clock::Timestamp;

/// Midnight UTC: minute windows start here.
const START: Timestamp = Timestamp::from_secs(86_400 * 20_000);
const BUCKET: &[u8] = b"api\0key\0K";

/// Envoy's local enforcement of one bucket, as 1.40 does it.
#[derive(Debug)]
struct SimEnvoy {
    stream: StreamId,
    demand_per_tick: u64,
    report_phase: u64,
    action: Option<(Assignment, Timestamp)>,
    tokens: f64,
    since_report: u64,
    decide_at: Option<Timestamp>,
    admitted: Vec<u64>,
    /// Admitted without an assignment in force (each window).
    fallback: Vec<u64>,
}

impl SimEnvoy {
    fn new(stream: u64, demand_per_tick: u64, report_phase: u64, windows: usize) -> Self {
        Self {
            stream: StreamId(stream),
            demand_per_tick,
            report_phase,
            action: None,
            tokens: 0.0,
            since_report: 0,
            decide_at: None,
            admitted: vec![0; windows],
            fallback: vec![0; windows],
        }
    }

    fn apply(&mut self, decided: Decided, now: Timestamp) {
        let kept = match (self.action, decided.assignment) {
            (
                Some((
                    Assignment::TokenBucket {
                        max_tokens: old, ..
                    },
                    _,
                )),
                Assignment::TokenBucket { max_tokens, .. },
            ) => old == max_tokens,
            _ => false,
        };
        if let Assignment::TokenBucket { max_tokens, .. } = decided.assignment
            && !kept
        {
            self.tokens = f64::from(max_tokens);
        }
        let ttl = decided.assignment.ttl().unwrap_or_default();
        self.action = Some((decided.assignment, now.saturating_add(ttl)));
        self.decide_at = Some(now.saturating_add(decided.decide_again_in));
    }

    /// Admits one request as Envoy would: `Some(true)` from the assignment, `None` without
    /// one (never assigned, or expired), which admits (the worst `no_assignment_behavior`).
    fn admit(&mut self, now: Timestamp, tick: Duration) -> Option<bool> {
        let admitted = match self.action {
            Some((Assignment::TokenBucket { max_tokens, .. }, expires)) if expires > now => {
                let refill = tick.as_secs_f64() / FILL_INTERVAL.as_secs_f64();
                self.tokens = (self.tokens + refill / self.demand_per_tick.max(1) as f64)
                    .min(f64::from(max_tokens));
                if self.tokens >= 1.0 {
                    self.tokens -= 1.0;
                    true
                } else {
                    false
                }
            }
            Some((Assignment::DenyAll { .. }, expires)) if expires > now => false,
            _ => return None,
        };
        Some(admitted)
    }
}

/// Runs `envoys` against one limit of `limit` per minute for `windows` minutes in 100 ms ticks;
/// returns what each Envoy admitted in each window. Answers arrive at once (no round trip), so
/// the only excess the ledger allows is what Envoy admits before its first answer; the
/// simulation checks that no assignment ever expires unreplaced.
fn simulate(limit: u64, envoys: Vec<SimEnvoy>, windows: usize) -> Vec<Vec<u64>> {
    simulate_with_resends(limit, envoys, windows, None)
}

/// [`simulate`], with every stream also re-sent its assignment, unprompted, every
/// `resend_every` ticks (as a reload does).
fn simulate_with_resends(
    limit: u64,
    mut envoys: Vec<SimEnvoy>,
    windows: usize,
    resend_every: Option<u64>,
) -> Vec<Vec<u64>> {
    let tick = Duration::from_millis(100);
    let mut ledger = QuotaLedger::new();
    let mut counted = vec![0_u64; windows + 1];
    let standing = |counted: &[u64], now: Timestamp| {
        let elapsed = now.as_nanos() - START.as_nanos();
        let window = (elapsed / 60_000_000_000) as usize;
        let until_reset = Duration::from_nanos(60_000_000_000 - elapsed % 60_000_000_000);
        Standing::Limited {
            limit,
            remaining: limit.saturating_sub(counted[window]),
            until_reset,
        }
    };
    for step in 0..(windows as u64 * 600) {
        let now = START.saturating_add(tick * u32::try_from(step).unwrap());
        let window = (step / 600) as usize;
        for envoy in &mut envoys {
            // The stream's timer: an assignment whose decision point came is replaced before
            // the tick's requests (in reality one round trip later; see the module doc).
            let resend = resend_every.is_some_and(|every| step % every == every - 1);
            if envoy.action.is_some() && (resend || envoy.decide_at.is_some_and(|at| at <= now)) {
                let standing = standing(&counted, now);
                let decided =
                    ledger.decide(BUCKET, envoy.stream, standing, Trigger::Unprompted, now);
                envoy.apply(decided, now);
            }
            for _ in 0..envoy.demand_per_tick {
                let first = envoy.action.is_none();
                let admitted = envoy.admit(now, tick);
                if admitted.is_none() {
                    eprintln!(
                        "DBG fallback step {step} envoy {:?} action {:?} decide_at {:?} now {now:?}",
                        envoy.stream, envoy.action, envoy.decide_at
                    );
                    envoy.fallback[window] += 1;
                }
                if admitted != Some(false) {
                    envoy.admitted[window] += 1;
                    envoy.since_report += 1;
                }
                if first {
                    // The first request opens the stream with an initial report.
                    counted[window] += std::mem::take(&mut envoy.since_report);
                    let standing = standing(&counted, now);
                    let decided =
                        ledger.decide(BUCKET, envoy.stream, standing, Trigger::Report, now);
                    envoy.apply(decided, now);
                }
            }
            if step % 50 == envoy.report_phase && envoy.action.is_some() {
                counted[window] += std::mem::take(&mut envoy.since_report);
                let standing = standing(&counted, now);
                let decided = ledger.decide(BUCKET, envoy.stream, standing, Trigger::Report, now);
                envoy.apply(decided, now);
            }
        }
    }
    for envoy in &envoys {
        let fallback: u64 = envoy.fallback.iter().sum();
        let opened = u64::from(envoy.action.is_some());
        assert_eq!(
            fallback, opened,
            "only the very first request finds no assignment"
        );
    }
    envoys.into_iter().map(|envoy| envoy.admitted).collect()
}

fn window_totals(admitted: &[Vec<u64>]) -> Vec<u64> {
    (0..admitted[0].len())
        .map(|window| admitted.iter().map(|envoy| envoy[window]).sum())
        .collect()
}

#[test]
fn one_hungry_envoy_gets_exactly_the_limit_each_window() {
    let admitted = simulate(100, vec![SimEnvoy::new(1, 3, 7, 3)], 3);
    assert_eq!(window_totals(&admitted), [100, 100, 100]);
}

#[test]
fn several_envoys_together_never_exceed_the_limit() {
    for (limit, demands) in [
        (100, [1, 2, 5]),
        (10, [1, 1, 1]),
        (1_000, [4, 9, 2]),
        (7, [3, 0, 1]),
    ] {
        let envoys = demands
            .iter()
            .enumerate()
            .map(|(i, &demand)| SimEnvoy::new(i as u64 + 1, demand, (i as u64 * 17) % 50, 4))
            .collect();
        let admitted = simulate(limit, envoys, 4);
        for (window, total) in window_totals(&admitted).into_iter().enumerate() {
            // Each Envoy's first request is admitted before any answer (and counted).
            let first_requests = if window == 0 { 3 } else { 0 };
            assert!(
                total <= limit + first_requests,
                "window {window}: {total} admitted, limit {limit}"
            );
            assert!(
                total * 10 >= limit * 7,
                "window {window}: only {total} of {limit} used"
            );
        }
    }
}

#[test]
fn unprompted_resends_never_hand_out_budget_a_stream_may_have_spent() {
    for resend_every in [3, 7, 23] {
        let envoys = [(1, 2, 5), (2, 5, 30), (3, 1, 44)]
            .into_iter()
            .map(|(id, demand, phase)| SimEnvoy::new(id, demand, phase, 3))
            .collect();
        let admitted = simulate_with_resends(50, envoys, 3, Some(resend_every));
        for (window, total) in window_totals(&admitted).into_iter().enumerate() {
            let first_requests = if window == 0 { 3 } else { 0 };
            assert!(
                total <= 50 + first_requests,
                "every {resend_every}: {total}"
            );
        }
    }
}

#[test]
fn equally_hungry_envoys_get_equal_shares() {
    let envoys = (1..=3).map(|id| SimEnvoy::new(id, 2, id * 13, 3)).collect();
    let admitted = simulate(300, envoys, 3);
    for envoy in &admitted {
        // After the first window (arrival order decides who waits), shares are within 10%.
        for &share in &envoy[1..] {
            assert!((90..=110).contains(&share), "{admitted:?}");
        }
    }
}
