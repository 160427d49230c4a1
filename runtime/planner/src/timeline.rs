//! Planner output, timeline: when each stage and link handles each micro-batch, for the
//! SVG drawing.
//!
//! It simulates the flow shop that [`crate::evaluate`] prices in closed form: a
//! micro-batch enters an element (stage or link) once it has left the previous element
//! and the element has finished the previous micro-batch. The last end equals the plan's
//! `total_s`, which the tests check.

use crate::plan::Plan;

/// A pipeline element: stage `i`, or the link from stage `i` to stage `i + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Element {
    Stage(usize),
    Link(usize),
}

/// One element busy with one micro-batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Slot {
    pub element: Element,
    pub micro_batch: u64,
    pub start: f64,
    pub end: f64,
}

/// Every slot of the plan's forward pass, element by element, micro-batches in order.
pub(crate) fn schedule(plan: &Plan) -> Vec<Slot> {
    let mut elements = Vec::new();
    for (i, stage) in plan.stages.iter().enumerate() {
        elements.push((Element::Stage(i), stage.time_s));
        if let Some(link) = plan.links.get(i) {
            elements.push((Element::Link(i), link.time_s));
        }
    }
    let m = plan.micro_batches as usize;
    // ends[j]: when micro-batch j left the previous element.
    let mut ends = vec![0.0_f64; m];
    let mut slots = Vec::with_capacity(elements.len() * m);
    for (element, time) in elements {
        let mut free = 0.0_f64;
        for (j, end) in ends.iter_mut().enumerate() {
            let start = free.max(*end);
            free = start + time;
            *end = free;
            slots.push(Slot {
                element,
                micro_batch: j as u64,
                start,
                end: free,
            });
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{LinkPlan, StagePlan};

    fn stage(time_s: f64) -> StagePlan {
        StagePlan {
            first_layer: 0,
            last_layer: 0,
            attention: Vec::new(),
            primary: "d".into(),
            time_s,
            devices: Vec::new(),
        }
    }

    #[test]
    fn the_simulated_pipeline_ends_at_the_closed_form_total() {
        // Stages of 3 s and 5 s with a 1 s link, 4 micro-batches:
        // fill 3 + 1 + 5 = 9 s, total 9 + 3·5 = 24 s.
        let plan = Plan {
            model: "m".into(),
            profile: "p".into(),
            dtype: "bf16".into(),
            layers: 2,
            heads: 1,
            kv_heads: 1,
            batch: 4,
            seq: 1,
            micro_batches: 4,
            sequences_per_micro_batch: 1,
            stages: vec![stage(3.0), stage(5.0)],
            links: vec![LinkPlan {
                from: "a".into(),
                to: "b".into(),
                bytes: 1.0,
                time_s: 1.0,
            }],
            bottleneck_s: 5.0,
            fill_s: 9.0,
            total_s: 24.0,
            time_per_token_s: 6.0,
            memory: Vec::new(),
            notes: Vec::new(),
        };
        let slots = schedule(&plan);
        assert_eq!(slots.len(), 12);
        let end = slots.iter().map(|s| s.end).fold(0.0, f64::max);
        assert_eq!(end, 24.0);
        // The second stage takes micro-batch 0 at 4 s, then works without a gap.
        let second: Vec<f64> = slots
            .iter()
            .filter(|s| s.element == Element::Stage(1))
            .map(|s| s.start)
            .collect();
        assert_eq!(second, vec![4.0, 9.0, 14.0, 19.0]);
    }
}
