//! Property test for concurrency limits on a manual clock: under any interleaving of acquires
//! and releases (every acquire, admitted or not, released once, as Envoy does), the admitted
//! leases never exceed `max_in_flight` and the stored count stays exact.

use std::num::NonZeroU32;

use proptest::prelude::*;

use super::*;
use crate::clock::Timestamp;
use crate::store::MemoryStore;

fn ask(rules: &RuleSet, store: &MemoryStore, hits: u64, release: bool) -> (bool, u32) {
    let mut descriptor = Descriptor::from_pairs(&[("k", "v")]).with_hits(hits);
    descriptor.refund = release;
    let request = Request::new("d", [descriptor]);
    let plan = plan(rules, &request, Timestamp::from_secs(600));
    let readings = store.apply_plan(&plan);
    let decision = conclude(&plan, &readings);
    if let Some(refund) = plan.refund_if_rejected(&decision, &readings) {
        store.apply_plan(&refund);
    }
    (decision.over_limit, decision.descriptors[0].remaining)
}

proptest! {
    #[test]
    fn admitted_leases_never_exceed_max_in_flight(
        max in 0u32..6,
        ops in prop::collection::vec((any::<bool>(), any::<prop::sample::Index>()), 1..200),
    ) {
        let lease = Window::new(TimeUnit::Minute, NonZeroU32::MIN);
        let rules = RuleSet::per_value("d", "k", [Limit::concurrency(max, lease)]);
        let store = MemoryStore::new();
        // Outstanding acquires: whether each was admitted.
        let mut outstanding: Vec<bool> = Vec::new();
        for (acquire, pick) in ops {
            if acquire || outstanding.is_empty() {
                let (over, _) = ask(&rules, &store, 1, false);
                outstanding.push(!over);
            } else {
                outstanding.swap_remove(pick.index(outstanding.len()));
                let (over, _) = ask(&rules, &store, 1, true);
                prop_assert!(!over, "a release is never over the limit");
            }
            let admitted = outstanding.iter().filter(|&&admitted| admitted).count();
            prop_assert!(admitted <= max as usize, "{admitted} admitted of {max}");
            let (_, remaining) = ask(&rules, &store, 0, false);
            let expected = (max as usize).saturating_sub(outstanding.len());
            prop_assert_eq!(remaining as usize, expected, "the count is exact");
        }
    }
}
