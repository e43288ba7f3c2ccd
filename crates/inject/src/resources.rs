//! Requests and limits of the containers the webhook adds, and Kubernetes quantities as the API server reads
//! them.
//!
//! A namespace whose ResourceQuota covers CPU or memory refuses a Pod with a container that declares none, as
//! Vault's injector knows (it sets its own, and takes flags and annotations for them too). The amounts come
//! from the Pod's `keyway.dev/requests-*` and `limits-*` annotations, else the webhook's `--resource` flags,
//! else [`Resources::default_amounts`] (a render takes well under these).

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// CPU and memory, each set or not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Amounts {
    /// CPU (`10m`, `0.5`).
    pub cpu: Option<Quantity>,
    /// Memory (`32Mi`, `1G`).
    pub memory: Option<Quantity>,
}

/// Requests and limits, each amount set or left to the next source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// What the scheduler reserves.
    pub requests: Amounts,
    /// What the container may use.
    pub limits: Amounts,
}

impl Resources {
    /// The amounts used when neither the Pod nor the webhook sets one.
    pub fn default_amounts() -> Resources {
        let amount = |text: &str| Some(Quantity(text.to_owned()));
        Resources {
            requests: Amounts {
                cpu: amount("10m"),
                memory: amount("32Mi"),
            },
            limits: Amounts {
                cpu: amount("500m"),
                memory: amount("128Mi"),
            },
        }
    }

    /// Sets one amount: `kind` is `requests` or `limits`, `resource` `cpu` or `memory`, `quantity` a
    /// non-negative Kubernetes quantity. The error says what is wrong, for an annotation or a flag.
    pub fn set(&mut self, kind: &str, resource: &str, quantity: &str) -> Result<(), String> {
        let amounts = match kind {
            "requests" => &mut self.requests,
            "limits" => &mut self.limits,
            _ => return Err(not_a_setting(kind, resource)),
        };
        let slot = match resource {
            "cpu" => &mut amounts.cpu,
            "memory" => &mut amounts.memory,
            _ => return Err(not_a_setting(kind, resource)),
        };
        match read_quantity(quantity) {
            Ok(Sign::Negative) => {
                return Err(format!(
                    "`{quantity}` is negative; a container's requests and limits are 0 or more"
                ));
            }
            Ok(Sign::NotNegative) => {}
            Err(problem) => {
                return Err(format!(
                    "`{quantity}` is not a Kubernetes quantity ({problem}); write e.g. \"100m\" for CPU, \"64Mi\" for \
                     memory"
                ));
            }
        }
        *slot = Some(Quantity(quantity.to_owned()));
        Ok(())
    }

    /// Each amount of `self`, else of `fallback`.
    #[must_use]
    pub fn or(&self, fallback: &Resources) -> Resources {
        let pick = |own: &Option<Quantity>, other: &Option<Quantity>| {
            own.clone().or_else(|| other.clone())
        };
        Resources {
            requests: Amounts {
                cpu: pick(&self.requests.cpu, &fallback.requests.cpu),
                memory: pick(&self.requests.memory, &fallback.requests.memory),
            },
            limits: Amounts {
                cpu: pick(&self.limits.cpu, &fallback.limits.cpu),
                memory: pick(&self.limits.memory, &fallback.limits.memory),
            },
        }
    }

    /// The container's `resources` field: the amounts that are set.
    pub fn requirements(&self) -> ResourceRequirements {
        let map = |amounts: &Amounts| {
            [("cpu", &amounts.cpu), ("memory", &amounts.memory)]
                .into_iter()
                .filter_map(|(name, amount)| Some((name.to_owned(), amount.clone()?)))
                .collect()
        };
        ResourceRequirements {
            requests: Some(map(&self.requests)),
            limits: Some(map(&self.limits)),
            ..ResourceRequirements::default()
        }
    }
}

fn not_a_setting(kind: &str, resource: &str) -> String {
    format!(
        "`{kind}.{resource}` is not one of requests.cpu, requests.memory, limits.cpu, limits.memory"
    )
}

/// A quantity as apimachinery's `ParseQuantity` reads it (`resource/quantity.go`, `parseQuantityString` and
/// the suffixer; the API server refuses anything else after admission, less clearly):
///
/// ```text
/// quantity  ::= sign? digits* ("." digits*)? suffix       (not empty; no digits at all reads as 0)
/// suffix    ::= "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E"      decimal SI
///             | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"                      binary SI
///             | ("e" | "E") integer                                        decimal exponent (an int64)
/// sign      ::= "+" | "-"
/// ```
///
/// The text is kept as written (Kubernetes writes its canonical form when it stores the Pod). Written by hand:
/// k8s-openapi's `Quantity` is the text alone, and no crate carries apimachinery's parser; the tests read
/// apimachinery's own test vectors (`tests/it/data/k8s_quantities.json`).
pub fn parse_quantity(text: &str) -> Result<Quantity, &'static str> {
    read_quantity(text).map(|_| Quantity(text.to_owned()))
}

/// Whether a quantity is below zero (`-0` is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sign {
    Negative,
    NotNegative,
}

fn read_quantity(text: &str) -> Result<Sign, &'static str> {
    if text.is_empty() {
        return Err("it is empty");
    }
    let digits = |s: &str| s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let mut number = &unsigned[..digits(unsigned)];
    if let Some(after) = unsigned[number.len()..].strip_prefix('.') {
        number = &unsigned[..=number.len() + digits(after)];
    }
    let suffix_ok = match &unsigned[number.len()..] {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti"
        | "Pi" | "Ei" => true,
        other => other
            .strip_prefix(['e', 'E'])
            .is_some_and(|exponent| exponent.parse::<i64>().is_ok()),
    };
    if !suffix_ok {
        return Err(
            "after the number comes none of the suffixes n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent e<N>",
        );
    }
    let nonzero = number.bytes().any(|b| matches!(b, b'1'..=b'9'));
    Ok(if text.starts_with('-') && nonzero {
        Sign::Negative
    } else {
        Sign::NotNegative
    })
}
