//! The planner against a brute-force enumeration of every placement, on small cases.
//!
//! The enumeration tries every micro-batch count, every sequence of stage groups (runs of
//! neighbouring memory pools, in order, any left out), every cut of the layers among them,
//! and every split of the K/V groups over each stage's devices, pricing each placement
//! with the public `evaluate_placement`. The planner's plan must be as fast as the best:
//! at these sizes every split is searched exhaustively (identical devices by their
//! symmetric splits, see `split_heads`), so the planner is exact. Cases include runs of
//! identical devices (groups), alone or among others.

mod cases;
mod common;

use attnc_planner::{
    Model, Placement, PlanError, Profile, SearchOptions, StagePlacement, evaluate_placement, plan,
};
use proptest::prelude::*;

/// Every way to write `total` as an ordered sum of `parts` numbers ≥ 0.
fn compositions(total: u64, parts: usize) -> Vec<Vec<u64>> {
    if parts == 1 {
        return vec![vec![total]];
    }
    (0..=total)
        .flat_map(|first| {
            compositions(total - first, parts - 1)
                .into_iter()
                .map(move |mut rest| {
                    rest.insert(0, first);
                    rest
                })
        })
        .collect()
}

struct Search<'a> {
    model: &'a Model,
    profile: &'a Profile,
    micro_batches: u64,
    best: Option<f64>,
    tried: usize,
}

impl Search<'_> {
    fn extend(&mut self, next_pool: usize, next_layer: usize, stages: &mut Vec<StagePlacement>) {
        let layers = self.model.layers();
        if next_layer == layers {
            self.tried += 1;
            let placement = Placement {
                micro_batches: self.micro_batches,
                stages: stages.clone(),
            };
            match evaluate_placement(self.model, self.profile, &common::ClosedForm, &placement) {
                Ok(p) => {
                    if self.best.is_none_or(|b| p.total_s < b) {
                        self.best = Some(p.total_s);
                    }
                }
                Err(PlanError::DoesNotFit { .. }) => {}
                Err(e) => panic!("{e}"),
            }
            return;
        }
        let pools = &self.profile.pools;
        for first in next_pool..pools.len() {
            for last in first..pools.len() {
                let devices: Vec<usize> =
                    (pools[first].devices.start..pools[last].devices.end).collect();
                for end in next_layer + 1..=layers {
                    for kv_groups in compositions(self.model.kv_heads, devices.len()) {
                        stages.push(StagePlacement {
                            devices: devices.clone(),
                            layers: next_layer..end,
                            kv_groups,
                        });
                        self.extend(last + 1, end, stages);
                        stages.pop();
                    }
                }
            }
        }
    }
}

/// The best predicted time of any placement, or `None` if none fits.
fn brute_force(model: &Model, profile: &Profile) -> (Option<f64>, usize) {
    let mut best: Option<f64> = None;
    let mut tried = 0;
    for m in (1..=model.batch).filter(|&m| model.batch.is_multiple_of(m)) {
        let mut search = Search {
            model,
            profile,
            micro_batches: m,
            best: None,
            tried: 0,
        };
        search.extend(0, 0, &mut Vec::new());
        tried += search.tried;
        if let Some(t) = search.best {
            best = Some(best.map_or(t, |b: f64| b.min(t)));
        }
    }
    (best, tried)
}

#[test]
fn compositions_are_all_there() {
    assert_eq!(compositions(2, 2), vec![vec![0, 2], vec![1, 1], vec![2, 0]]);
    // C(4 + 3 - 1, 3 - 1) = 15
    assert_eq!(compositions(4, 3).len(), 15);
}

/// Found by the property below: the fastest split of a stage is not always the best one,
/// because its primary decides which link carries the stage's output. Here `d0` computes
/// the first stage fastest but reaches `d2` only over a slow default link; `d1` is slower
/// but has a fast link to `d2`.
#[test]
fn the_primary_is_chosen_with_the_links_in_view() {
    let model = Model::parse(
        r#"
        name = "small"
        layers = 2
        hidden = 256
        heads = 6
        kv_heads = 3
        head_dim = 16
        mlp_hidden = 128
        dtype = "f32"
        batch = 1
        seq = 16
        attention = "causal.attn"
        "#,
        std::path::Path::new("small.toml"),
    )
    .unwrap();
    let profile = Profile::parse(
        r#"
        name = "links"
        default_link = { bandwidth_gbs = 0.05, latency_us = 2398 }
        [[device]]
        name = "d0"
        kind = "gpu"
        peak_tflops = { f32 = 0.025, f16 = 0.05, bf16 = 0.05 }
        memory_bandwidth_gbs = 5
        launch_overhead_us = 0
        pool = "pool0"
        [[device]]
        name = "d1"
        kind = "cpu"
        peak_tflops = { f32 = 1.384, f16 = 2.768, bf16 = 2.768 }
        memory_bandwidth_gbs = 5
        launch_overhead_us = 32
        pool = "pool0"
        [[device]]
        name = "d2"
        kind = "gpu"
        peak_tflops = { f32 = 0.025, f16 = 0.05, bf16 = 0.05 }
        memory_bandwidth_gbs = 5
        launch_overhead_us = 0
        memory_gib = 0.00101
        [[pool]]
        name = "pool0"
        memory_gib = 0.000828
        [[link]]
        between = ["d0", "d1"]
        bandwidth_gbs = 0.05
        latency_us = 1
        [[link]]
        between = ["d1", "d2"]
        bandwidth_gbs = 0.05
        latency_us = 1
        "#,
        std::path::Path::new("links.toml"),
    )
    .unwrap();
    let (best, _) = brute_force(&model, &profile);
    let p = plan(
        &model,
        &profile,
        &common::ClosedForm,
        &SearchOptions::default(),
    )
    .unwrap();
    let best = best.unwrap();
    assert!(
        p.total_s <= best * (1.0 + 1e-9),
        "planner {} s, brute force {best} s",
        p.total_s
    );
    assert_eq!(p.stages.len(), 2);
    assert_eq!(p.stages[0].primary, "d1");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn planner_equals_brute_force(case in cases::case(8, 4)) {
        let (best, tried) = brute_force(&case.model, &case.profile);
        prop_assert!(tried > 0);
        let planned = plan(&case.model, &case.profile, &common::ClosedForm, &SearchOptions::default());
        match (best, planned) {
            (None, Err(PlanError::DoesNotFit { .. })) => {}
            (Some(best), Ok(p)) => {
                prop_assert!(p.total_s <= best * (1.0 + 1e-9), "planner {} s, brute force {} s", p.total_s, best);
                prop_assert!(p.total_s >= best * (1.0 - 1e-9), "planner {} s beats brute force {} s", p.total_s, best);
            }
            (best, planned) => prop_assert!(false, "brute force {best:?}, planner {planned:?}"),
        }
    }
}
