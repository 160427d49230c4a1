//! Properties every plan has: it fits in every memory pool, and it places every layer and
//! every head exactly once.

mod cases;
mod common;

use attnc_planner::{PlanError, SearchOptions, plan, render_svg, render_text};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn no_plan_overfills_a_pool(case in cases::case(16, 6)) {
        let p = match plan(&case.model, &case.profile, &common::ClosedForm, &SearchOptions::default()) {
            Ok(p) => p,
            Err(PlanError::DoesNotFit { shortages, .. }) => {
                prop_assert!(!shortages.is_empty());
                for s in shortages {
                    prop_assert!(s.needed_bytes > s.capacity_bytes);
                }
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        for pool in &case.profile.pools {
            let used: f64 = p.memory[pool.devices.clone()].iter().map(|m| m.used_bytes).sum();
            prop_assert!(used <= pool.capacity * (1.0 + 1e-9), "pool {} holds {} of {}", pool.name, used, pool.capacity);
        }
        // Memory per device agrees with the stages' own accounts.
        for m in &p.memory {
            let in_stages: f64 = p.stages.iter().flat_map(|s| &s.devices).filter(|d| d.device == m.device).map(|d| d.memory_bytes).sum();
            prop_assert!((in_stages - m.used_bytes).abs() <= 1e-9 * m.used_bytes.max(1.0));
        }
    }

    #[test]
    fn every_layer_and_head_is_placed_once(case in cases::case(16, 6)) {
        let Ok(p) = plan(&case.model, &case.profile, &common::ClosedForm, &SearchOptions::default()) else {
            return Ok(());
        };
        let layers = case.model.layers();
        let heads = case.model.heads as usize;
        let mut owners = vec![vec![0u32; heads]; layers];
        let mut devices_seen = std::collections::BTreeSet::new();
        for stage in &p.stages {
            for d in &stage.devices {
                // A device serves one stage at most.
                prop_assert!(devices_seen.insert(d.device.clone()), "{} serves two stages", d.device);
                prop_assert_eq!(d.heads[0], d.kv_groups[0] * case.model.heads_per_kv_group());
                prop_assert_eq!(d.heads[1], d.kv_groups[1] * case.model.heads_per_kv_group());
                for layer in owners.iter_mut().take(stage.last_layer + 1).skip(stage.first_layer) {
                    for h in d.heads[0]..d.heads[1] {
                        layer[h as usize] += 1;
                    }
                }
            }
        }
        for (l, layer) in owners.iter().enumerate() {
            for (h, &n) in layer.iter().enumerate() {
                prop_assert_eq!(n, 1, "layer {} head {} placed {} times", l, h, n);
            }
        }
        // The predicted total follows the pipeline formula.
        let times: Vec<f64> = p.stages.iter().map(|s| s.time_s).chain(p.links.iter().map(|l| l.time_s)).collect();
        let fill: f64 = times.iter().sum();
        let max = times.iter().cloned().fold(0.0, f64::max);
        let total = fill + (p.micro_batches - 1) as f64 * max;
        prop_assert!((total - p.total_s).abs() <= 1e-12 * total);
        // Every renderer copes with every plan.
        prop_assert!(render_text(&p).contains("stage 0"));
        prop_assert!(render_svg(&p).ends_with("</svg>\n"));
    }
}
