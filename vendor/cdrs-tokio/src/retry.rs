mod reconnection_policy;
mod retry_policy;

pub use reconnection_policy::*;
pub use retry_policy::*;
