//! The two Kubernetes object-meta types the status uses, as plain data: a timestamp in the form
//! the API server writes (`metav1.Time`, UTC whole seconds) and a condition (`metav1.Condition`).
//! Their JSON is the API server's; keeping them here keeps `k8s-openapi` out of the engine.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, serialized as the API server serializes `metav1.Time`:
/// RFC 3339 in UTC with whole seconds (`2026-12-03T17:00:00Z`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub jiff::Timestamp);

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            &jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", self.0).map_err(|_| fmt::Error)?,
        )
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        s.parse().map(Time).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Time {
    fn schema_name() -> Cow<'static, str> {
        "Time".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "date-time" })
    }
}

/// One aspect of the resource's state, as `metav1.Condition` has it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The aspect, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Why, in one CamelCase word a program can match on.
    pub reason: String,
    /// Why, for a person: what is wrong and what to do.
    pub message: String,
    /// The generation of the spec this condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed.
    pub last_transition_time: Time,
}

impl Condition {
    /// Whether the condition's status is `status`.
    pub fn is(&self, status: super::ConditionStatus) -> bool {
        self.status == status.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_written_as_the_api_server_writes_it_and_read_in_any_rfc3339_form() {
        let t: Time = serde_json::from_str("\"2026-11-25T12:00:00.123456789+01:00\"").unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-11-25T11:00:00Z\""
        );
        assert!(serde_json::from_str::<Time>("\"tomorrow\"").is_err());
    }

    #[test]
    fn condition_json_is_metav1_condition() {
        let c = Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Signed".into(),
            message: "ok".into(),
            observed_generation: Some(3),
            last_transition_time: Time("2026-11-25T12:00:00Z".parse().unwrap()),
        };
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::json!({"type": "Ready", "status": "True", "reason": "Signed", "message": "ok",
                "observedGeneration": 3, "lastTransitionTime": "2026-11-25T12:00:00Z"})
        );
    }
}
