//! Planner step 2: the roofline cost model, turning work into seconds on a device or link.
//!
//! A kernel takes the longer of its compute time and its memory time (it is bound by one
//! or the other), plus a fixed launch overhead. A transfer takes the link latency plus its
//! bytes over the link bandwidth. Every other time in the planner is a sum or a maximum of
//! these two functions, so a calibration run only has to correct their inputs.

use crate::devices::{Device, Link};
use crate::model::Dtype;
use crate::work::OpWork;

/// Seconds for `device` to run its `share` (0..=1) of `op`. A device with no share does not
/// launch the kernel and costs nothing.
pub fn op_time(device: &Device, dtype: Dtype, op: &OpWork, share: f64) -> f64 {
    if share <= 0.0 {
        return 0.0;
    }
    let compute = share * op.flops / device.peak(dtype);
    let memory = (share * op.split_bytes + op.shared_bytes) / device.memory_bandwidth;
    device.launch_overhead + compute.max(memory)
}

/// Seconds to send `bytes` over `link`; sending nothing costs nothing.
pub fn transfer_time(link: Link, bytes: f64) -> f64 {
    if bytes <= 0.0 {
        return 0.0;
    }
    link.latency + bytes / link.bandwidth
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::DeviceKind;

    fn device() -> Device {
        Device {
            name: "d".into(),
            kind: DeviceKind::Gpu,
            // f32 1 TFLOP/s, f16 2 TFLOP/s, bf16 4 TFLOP/s
            peak_flops: [1e12, 2e12, 4e12],
            memory_bandwidth: 100e9,
            launch_overhead: 10e-6,
            pool: 0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1e-12)
    }

    #[test]
    fn compute_bound_op() {
        // A 1024×1024×1024 bf16 matrix product: 2·1024³ = 2147483648 FLOPs,
        // bytes 3·1024²·2 = 6291456 (split) and none shared.
        // compute = 2147483648 / 4e12 = 536.870912 µs; memory = 6291456 / 100e9 = 62.91456 µs.
        // compute-bound: 10 µs + 536.870912 µs = 546.870912 µs.
        let op = OpWork {
            flops: 2147483648.0,
            split_bytes: 6291456.0,
            shared_bytes: 0.0,
        };
        assert!(close(
            op_time(&device(), Dtype::Bf16, &op, 1.0),
            546.870912e-6
        ));
        // In f32 the peak is a quarter: compute = 2147.483648 µs, total 2157.483648 µs.
        assert!(close(
            op_time(&device(), Dtype::F32, &op, 1.0),
            2157.483648e-6
        ));
    }

    #[test]
    fn memory_bound_share() {
        // Half of an op with 1 GFLOP, 1 GB split bytes and 0.2 GB shared bytes, in f16:
        // compute = 0.5·1e9 / 2e12 = 250 µs; memory = (0.5·1e9 + 0.2e9) / 100e9 = 7 ms.
        // memory-bound: 10 µs + 7000 µs = 7010 µs.
        let op = OpWork {
            flops: 1e9,
            split_bytes: 1e9,
            shared_bytes: 0.2e9,
        };
        assert!(close(op_time(&device(), Dtype::F16, &op, 0.5), 7010e-6));
        assert_eq!(op_time(&device(), Dtype::F16, &op, 0.0), 0.0);
    }

    #[test]
    fn transfers() {
        // 8 MiB over Wi-Fi at 75 MB/s with 3 ms latency:
        // 3 ms + 8388608 / 75e6 s = 3 ms + 111.848106667 ms = 114.848106667 ms.
        let wifi = Link {
            bandwidth: 75e6,
            latency: 3e-3,
        };
        assert!(close(
            transfer_time(wifi, 8388608.0),
            0.114_848_106_666_666_67
        ));
        assert_eq!(transfer_time(wifi, 0.0), 0.0);
    }
}
