//! `GET /metrics`: admission reviews by result and their latency, for alerts on denied Pods or a slow webhook
//! (the API server waits for it on every Pod creation). Pod names and namespaces are not labels: they are
//! logged per review instead.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// What a review ended as.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    /// Allowed with a patch: secrets (or an identity) were delivered.
    Mutated,
    /// Allowed as it was: the Pod asked for nothing, or already had it.
    Unchanged,
    /// Denied: a bad annotation, or an identity mapping with `FAIL` and no match.
    Denied,
    /// Not an AdmissionReview for a Pod, or too large.
    Invalid,
}

pub(crate) struct Metrics {
    registry: Registry,
    reviews: Family<ResultLabels, Counter>,
    seconds: Histogram,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("keyway_webhook");
        let reviews = Family::<ResultLabels, Counter>::default();
        registry.register(
            "admissions",
            "Admission reviews by result (mutated, unchanged, denied, invalid)",
            reviews.clone(),
        );
        // 100 us to ~1.6 s.
        let seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 15));
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission review, body read included",
            seconds.clone(),
        );
        registry.register(
            "build",
            "The keyway version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Metrics {
            registry,
            reviews,
            seconds,
        }
    }

    pub(crate) fn review(&self, outcome: Outcome, seconds: f64) {
        let result = match outcome {
            Outcome::Mutated => "mutated",
            Outcome::Unchanged => "unchanged",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
        };
        self.reviews.get_or_create(&ResultLabels { result }).inc();
        self.seconds.observe(seconds);
    }

    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
