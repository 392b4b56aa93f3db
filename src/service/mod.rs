//! tonic adapters: Envoy's protobuf on one side, the engine on the other.

mod convert;
mod headers;
mod policy;
mod reflection;
mod rlqs;
mod rls;
mod usage;

pub use convert::{
    InvalidRequest, RequestLimits, read_request, request_from_wire, response_from_decision,
    unit_to_wire, wire_unit,
};
pub use headers::decorate;
pub use policy::StoreErrorPolicy;
pub use reflection::{RLS_FILE_DESCRIPTOR_SET, ReflectionError, reflection_v1, reflection_v1alpha};
pub use rlqs::{QuotaService, RELOAD_POLL};
pub use rls::{RateLimiter, SharedRules, shared_rules};
pub use usage::{
    DescriptorUsage, EntryUsage, LimitUsage, RuleStatus, UsageError, UsageQuery, UsageReport,
    WindowUsage, rfc3339,
};
