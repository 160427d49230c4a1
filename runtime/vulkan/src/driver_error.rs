//! Failures of Vulkan calls, named by the call: the driver or the machine failed, not the
//! kernel's inputs, so messages say which call and what the driver returned.

use ash::vk;

/// A Vulkan call that returned an error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{call} failed: {result} ({result:?})")]
pub struct DriverError {
    pub call: &'static str,
    pub result: vk::Result,
}

/// Names the call of a failed `VkResult`, so `?` carries it.
pub(crate) trait Call<T> {
    fn call(self, call: &'static str) -> Result<T, DriverError>;
}

impl<T> Call<T> for Result<T, vk::Result> {
    fn call(self, call: &'static str) -> Result<T, DriverError> {
        self.map_err(|result| DriverError { call, result })
    }
}
