//! The `SignedImage` resource's spec and status (`trustkeeper.dev/v1alpha1`) as plain data with
//! serde and schema derives; no I/O and no Kubernetes types. The engine reads the spec and fills
//! the status; the operator's crate puts the kube derive around them and writes the status.

mod conditions;
mod meta;
mod planned;
mod spec;
mod status;

pub use conditions::{ConditionStatus, READY, reasons, set_condition};
pub use meta::{Condition, Time};
pub use planned::*;
pub use spec::*;
pub use status::*;
pub use trustkeeper_http::duration::{GoDuration, parse_go_duration};
pub use trustkeeper_http::human_duration;
