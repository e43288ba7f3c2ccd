//! Secret values and their metadata.
//!
//! A value lives in one zeroize-on-drop buffer shared by reference counting, so the cache, concurrent readers
//! and the daemon's responses never copy it; `Debug` prints `[redacted N bytes]`, and there is no `Display`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use secrecy::{ExposeSecret, SecretBox};
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::Error;
use crate::reference::Field;

/// How the backend stored a value: AWS distinguishes `SecretString` from `SecretBinary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 text.
    Text,
    /// Arbitrary bytes.
    Binary,
    /// Named entries of bytes, each its own value (a Kubernetes Secret's `data`): a JSON object of base64 text,
    /// as the Kubernetes API writes it. A reference names one entry as its field (`#KEY`); the whole is never
    /// delivered.
    Entries,
}

/// A secret's bytes. Cloning shares the buffer; the last drop zeroizes it, and the answers rendered from it
/// ([`SecretValue::rendered`]) with it.
#[derive(Clone)]
pub struct SecretValue(pub(crate) Arc<Held>);

/// The bytes of one version and what servers rendered from them.
pub(crate) struct Held {
    bytes: SecretBox<Vec<u8>>,
    rendered: [OnceLock<Rendered>; Rendering::COUNT],
}

/// An answer a server sends for a version (the AWS agent's JSON body), made once on the first read that asks
/// for it and kept with the value, so every later read of that version sends the same prepared bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rendering {
    /// The AWS Secrets Manager Agent's `GetSecretValue` body.
    AwsAgent,
}

impl Rendering {
    const COUNT: usize = 1;

    fn slot(self) -> usize {
        match self {
            Rendering::AwsAgent => 0,
        }
    }
}

/// One rendered answer and the request text it was made for, when it depends on one.
struct Rendered {
    made_for: Box<str>,
    body: Bytes,
}

impl SecretValue {
    /// Takes ownership of the bytes without copying them.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretValue(Arc::new(Held {
            bytes: SecretBox::new(Box::new(bytes)),
            rendered: Default::default(),
        }))
    }

    /// Exposes the bytes. Every call site is a place where the value leaves Keyway's control: keep them few.
    pub fn expose(&self) -> &[u8] {
        self.0.bytes.expose_secret()
    }

    /// The answer `what` for this version: the one made before, when it was made for the same `made_for` (the
    /// part of the request the body echoes, or `""`), else `make`'s bytes, kept for the next reads when none was
    /// made yet. The bytes are zeroized when the last copy (the value's or a response's) is dropped.
    pub fn rendered(
        &self,
        what: Rendering,
        made_for: &str,
        make: impl FnOnce() -> Vec<u8>,
    ) -> Bytes {
        let slot = &self.0.rendered[what.slot()];
        if let Some(done) = slot.get() {
            if *done.made_for == *made_for {
                return done.body.clone();
            }
            return Bytes::from_owner(Zeroizing::new(make()));
        }
        let body = Bytes::from_owner(Zeroizing::new(make()));
        let done = slot.get_or_init(|| Rendered {
            made_for: made_for.into(),
            body: body.clone(),
        });
        if *done.made_for == *made_for {
            done.body.clone()
        } else {
            body
        }
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.expose().len()
    }

    /// True for an empty value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Compares two values in constant time with respect to their contents.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        self.expose().ct_eq(other).into()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[redacted {} bytes]", self.len())
    }
}

impl From<String> for SecretValue {
    fn from(s: String) -> Self {
        SecretValue::new(s.into_bytes())
    }
}

/// What a backend says about a version besides its value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretMeta {
    /// The backend's full name for the secret (ARN for AWS, `projects/P/secrets/S` for GCP).
    pub name: String,
    /// Version id (AWS version UUID, GCP version number, a content hash for local files).
    pub version_id: String,
    /// Staging labels (AWS) or aliases (GCP), when the backend returns them with the value.
    pub stages: Vec<String>,
    /// When the version was created, when the backend says.
    pub created: Option<SystemTime>,
    /// The backend's own fields of the version beyond these (Parameter Store's `Type`, `DataType`, `ARN`), for
    /// the drop-in routes that echo them: names and labels, never a value.
    pub attributes: BTreeMap<String, String>,
}

/// One fetched version: value plus metadata.
#[derive(Debug, Clone)]
pub struct Secret {
    /// The bytes.
    pub value: SecretValue,
    /// Text or binary, as stored.
    pub encoding: Encoding,
    /// Version metadata, shared by every copy of the secret (a cached read clones no string).
    pub meta: Arc<SecretMeta>,
}

impl Secret {
    /// Selects `field` from the JSON value, returning a new secret holding only the field. A string field yields
    /// its text; any other JSON yields its compact JSON text. The JSON is read in place (borrowed), so the value
    /// is not copied into unzeroized parse trees.
    pub fn select(&self, field: &Field, reference: &dyn fmt::Display) -> Result<Secret, Error> {
        if self.encoding == Encoding::Entries {
            return self.select_entry(field, reference);
        }
        let not_json = || Error::NotJson {
            reference: reference.to_string(),
            field: field.to_string(),
        };
        let mut raw: &RawValue =
            serde_json::from_slice(self.value.expose()).map_err(|_| not_json())?;
        let path: Vec<Cow<'_, str>> = match field {
            Field::Key(key) => vec![Cow::Borrowed(key.as_str())],
            Field::Pointer(pointer) => pointer[1..]
                .split('/')
                .map(|token| Cow::Owned(token.replace("~1", "/").replace("~0", "~")))
                .collect(),
        };
        for token in &path {
            raw = step(raw, token).map_err(|available| match available {
                None => not_json(),
                Some(available) => Error::FieldNotFound {
                    reference: reference.to_string(),
                    field: field.to_string(),
                    available,
                },
            })?;
        }
        let bytes = match serde_json::from_str::<Cow<'_, str>>(raw.get()) {
            Ok(Cow::Borrowed(s)) => s.as_bytes().to_vec(),
            Ok(Cow::Owned(s)) => zeroize::Zeroizing::new(s).as_bytes().to_vec(),
            Err(_) => raw.get().as_bytes().to_vec(),
        };
        Ok(Secret {
            value: SecretValue::new(bytes),
            encoding: Encoding::Text,
            meta: self.meta.clone(),
        })
    }
}

impl Secret {
    /// The names of an [`Encoding::Entries`] value's entries, comma separated (names only).
    pub fn entry_names(&self) -> String {
        let names: BTreeMap<Cow<'_, str>, &RawValue> =
            serde_json::from_slice(self.value.expose()).unwrap_or_default();
        if names.is_empty() {
            "(none)".to_owned()
        } else {
            names.into_keys().collect::<Vec<_>>().join(", ")
        }
    }

    /// One entry of an [`Encoding::Entries`] value, decoded: `#KEY`, or `#/KEY/...` to select inside the entry's
    /// own JSON.
    fn select_entry(&self, field: &Field, reference: &dyn fmt::Display) -> Result<Secret, Error> {
        let (key, rest) = match field {
            Field::Key(key) => (key.clone(), None),
            Field::Pointer(pointer) => {
                let mut tokens = pointer[1..].splitn(2, '/');
                let key = tokens
                    .next()
                    .unwrap_or_default()
                    .replace("~1", "/")
                    .replace("~0", "~");
                (
                    key,
                    tokens.next().map(|rest| Field::Pointer(format!("/{rest}"))),
                )
            }
        };
        let entries: BTreeMap<Cow<'_, str>, Cow<'_, str>> =
            serde_json::from_slice(self.value.expose()).unwrap_or_default();
        let Some(encoded) = entries.get(key.as_str()) else {
            return Err(Error::FieldNotFound {
                reference: reference.to_string(),
                field: key,
                available: self.entry_names(),
            });
        };
        // Standard base64 with padding, as Kubernetes writes `data`.
        let bytes = data_encoding::BASE64
            .decode(encoded.as_bytes())
            .map_err(|_| Error::NotJson {
                reference: reference.to_string(),
                field: key.clone(),
            })?;
        let encoding = if std::str::from_utf8(&bytes).is_ok() {
            Encoding::Text
        } else {
            Encoding::Binary
        };
        let entry = Secret {
            value: SecretValue::new(bytes),
            encoding,
            meta: self.meta.clone(),
        };
        match rest {
            Some(rest) => entry.select(&rest, reference),
            None => Ok(entry),
        }
    }
}

/// Descends one level. `Err(None)` means the node is not a container; `Err(Some(names))` lists what exists.
fn step<'a>(raw: &'a RawValue, token: &str) -> Result<&'a RawValue, Option<String>> {
    let text = raw.get().trim_start();
    if text.starts_with('{') {
        let map: BTreeMap<Cow<'a, str>, &'a RawValue> =
            serde_json::from_str(raw.get()).map_err(|_| None)?;
        if let Some(v) = map.get(token) {
            return Ok(v);
        }
        let names: Vec<&str> = map.keys().map(AsRef::as_ref).collect();
        Err(Some(if names.is_empty() {
            "(none)".to_owned()
        } else {
            names.join(", ")
        }))
    } else if text.starts_with('[') {
        let items: Vec<&'a RawValue> = serde_json::from_str(raw.get()).map_err(|_| None)?;
        let len = items.len();
        token
            .parse::<usize>()
            .ok()
            .and_then(|i| items.get(i).copied())
            .ok_or_else(|| Some(format!("array indexes 0..{len}")))
    } else {
        Err(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(json: &str) -> Secret {
        Secret {
            value: SecretValue::from(json.to_owned()),
            encoding: Encoding::Text,
            meta: Arc::default(),
        }
    }

    /// A body is made on the first read of a version and shared by every later one and every clone of the
    /// value; a read that echoes another request text gets its own, which is not kept.
    #[test]
    fn an_answer_is_rendered_once_per_version_for_the_text_it_echoes() {
        let value = SecretValue::from("s3cret".to_owned());
        let made = std::cell::Cell::new(0);
        let render = |text: &'static str| {
            made.set(made.get() + 1);
            text.as_bytes().to_vec()
        };
        let first = value.rendered(Rendering::AwsAgent, "team/api", || render("first"));
        let again = value
            .clone()
            .rendered(Rendering::AwsAgent, "team/api", || render("again"));
        assert_eq!(
            (&first[..], &again[..], made.get()),
            (&b"first"[..], &b"first"[..], 1)
        );
        assert_eq!(first.as_ptr(), again.as_ptr(), "the same bytes, not a copy");
        let other = value.rendered(Rendering::AwsAgent, "team/other", || render("other"));
        let later = value.rendered(Rendering::AwsAgent, "team/api", || render("later"));
        assert_eq!(
            (&other[..], &later[..], made.get()),
            (&b"other"[..], &b"first"[..], 2)
        );
        let next_version = SecretValue::from("rotated".to_owned());
        let next = next_version.rendered(Rendering::AwsAgent, "team/api", || render("next"));
        assert_eq!((&next[..], made.get()), (&b"next"[..], 3));
    }

    fn select(json: &str, field: &Field) -> Result<String, Error> {
        let s = secret(json).select(field, &"local://x")?;
        Ok(String::from_utf8(s.value.expose().to_vec()).unwrap())
    }

    /// A Kubernetes Secret's `data`: each entry base64, binary or text, selected whole or inside its JSON.
    #[test]
    fn entries_are_decoded_one_at_a_time() {
        let secret = Secret {
            value: SecretValue::from(
                r#"{"token":"Z2hwXzE=","cfg":"eyJkYiI6eyJwdyI6InAifX0=","keystore":"AP8A"}"#
                    .to_owned(),
            ),
            encoding: Encoding::Entries,
            meta: Arc::default(),
        };
        let token = secret
            .select(&Field::Key("token".into()), &"k8s://ns/s")
            .unwrap();
        assert_eq!(
            (token.value.expose(), token.encoding),
            (&b"ghp_1"[..], Encoding::Text)
        );
        let keystore = secret
            .select(&Field::Key("keystore".into()), &"k8s://ns/s")
            .unwrap();
        assert_eq!(
            (keystore.value.expose(), keystore.encoding),
            (&[0, 255, 0][..], Encoding::Binary)
        );
        let inner = secret
            .select(&Field::Pointer("/cfg/db/pw".into()), &"k8s://ns/s")
            .unwrap();
        assert_eq!(inner.value.expose(), b"p");
        let missing = secret
            .select(&Field::Key("tokn".into()), &"k8s://ns/s")
            .unwrap_err();
        assert_eq!(
            missing.to_string(),
            "k8s://ns/s: field `tokn` not found; fields present: cfg, keystore, token"
        );
    }

    #[test]
    fn selects_keys_and_pointers() {
        let json = r#"{"github_token":"ghp_1","db":{"password":"p\"w","port":5432},"list":["a",{"b":true}],"a/b":{"~":1}}"#;
        assert_eq!(
            select(json, &Field::Key("github_token".into())).unwrap(),
            "ghp_1"
        );
        assert_eq!(
            select(json, &Field::Pointer("/db/password".into())).unwrap(),
            "p\"w"
        );
        assert_eq!(
            select(json, &Field::Pointer("/db/port".into())).unwrap(),
            "5432"
        );
        assert_eq!(
            select(json, &Field::Key("db".into())).unwrap(),
            r#"{"password":"p\"w","port":5432}"#
        );
        assert_eq!(
            select(json, &Field::Pointer("/list/1/b".into())).unwrap(),
            "true"
        );
        assert_eq!(
            select(json, &Field::Pointer("/a~1b/~0".into())).unwrap(),
            "1"
        );
    }

    #[test]
    fn missing_field_names_existing_fields_never_values() {
        let err = select(
            r#"{"user":"admin","password":"hunter2"}"#,
            &Field::Key("token".into()),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("fields present: password, user"), "{msg}");
        assert!(!msg.contains("hunter2") && !msg.contains("admin"), "{msg}");
        let err = select(r#"{"list":[1,2]}"#, &Field::Pointer("/list/5".into())).unwrap_err();
        assert!(err.to_string().contains("array indexes 0..2"), "{err}");
    }

    #[test]
    fn non_json_values_say_so_without_the_value() {
        let err = select("plain-hunter2", &Field::Key("k".into())).unwrap_err();
        assert!(matches!(err, Error::NotJson { .. }));
        assert!(!err.to_string().contains("hunter2"));
        let err = select(r#"{"k":"v"}"#, &Field::Pointer("/k/deeper".into())).unwrap_err();
        assert!(matches!(err, Error::NotJson { .. }), "{err}");
    }

    #[test]
    fn debug_redacts_and_eq_is_by_content() {
        let v = SecretValue::from("hunter2".to_owned());
        assert_eq!(format!("{v:?}"), "[redacted 7 bytes]");
        assert!(!format!("{:?}", secret("hunter2")).contains("hunter2"));
        assert!(v.ct_eq(b"hunter2"));
        assert!(!v.ct_eq(b"hunter3"));
    }
}
