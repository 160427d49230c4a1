//! Summarising timed calls: the median is what a report quotes (robust to the odd slow call
//! when the GPU clocks up or another process runs), the minimum what the hardware can do.

use attnc_device::Timing;

/// The median and minimum of `samples` (seconds per call); `None` when there are none or one
/// is not a finite, non-negative time.
pub fn summarize(samples: &[f64]) -> Option<Timing> {
    if samples.is_empty() || samples.iter().any(|s| !s.is_finite() || *s < 0.0) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    Some(Timing {
        median_s: median,
        min_s: sorted[0],
        samples: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_min() {
        let t = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((t.median_s, t.min_s, t.samples), (2.0, 1.0, 3));
        let t = summarize(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!((t.median_s, t.min_s), (2.5, 1.0));
        assert_eq!(summarize(&[]), None);
        assert_eq!(summarize(&[1.0, f64::NAN]), None);
    }
}
