//! The AdmissionReview's JSON, in and out.

use k8s_openapi::api::core::v1::Pod;
use kube_core::admission::{AdmissionResponse, AdmissionReview};

/// Reads an AdmissionReview for a Pod. The error names where the body went wrong (a JSON path, line and column)
/// and how, never what it held there: serde's own messages quote the value they met, and a Pod's `env` values
/// are often secrets (an unquoted `value: 1234` in a manifest is an integer where a string belongs).
pub fn read_review(body: &[u8]) -> Result<AdmissionReview<Pod>, String> {
    let mut reader = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut reader).map_err(|e| {
        let place = match e.path().to_string() {
            path if path == "." => String::new(),
            path => format!(" at `{path}`"),
        };
        let problem = keyway_core::JsonProblem::from(e.inner());
        format!(
            "not an AdmissionReview for a Pod: {}{place} (line {}, column {})",
            problem.what, problem.line, problem.column
        )
    })
}

/// The AdmissionReview that carries `response`, as JSON, with the patch base64-encoded: the API's JSON form of
/// its `[]byte`, as the Kubernetes documentation shows it. kube-core writes the bytes as an array of numbers
/// (kube-rs/kube#1781), which Go's decoder also reads, at about three times the size.
pub fn review_json(response: AdmissionResponse) -> serde_json::Value {
    let patch = response
        .patch
        .as_deref()
        .map(|bytes| data_encoding::BASE64.encode(bytes));
    let mut review = serde_json::to_value(response.into_review()).unwrap_or_default();
    if let (Some(patch), Some(field)) = (patch, review.pointer_mut("/response/patch")) {
        *field = serde_json::Value::String(patch);
    }
    review
}
