//! `keyway exec --mask`: every resolved value, and the forms commands print values in, replaced by
//! [`CONCEALED`] in a stream of bytes, as `op run` and CI log masking do. For commands that print what they were
//! given (`set -x`, `env`, a client that logs its request URL) and would otherwise put a token into a log. The
//! forms are hidden too ([`encoded_forms`]: base64, percent-encoding, JSON escapes, as GitHub Actions' masking
//! does). Values are searched with `memchr::memmem` finders that borrow the values and their forms (those computed
//! into zeroizing buffers); the stream passes through pre-sized zeroizing buffers. No process here: the
//! supervisor ([`crate::supervise`]) relays the command's output through [`Masker::relay`].

use memchr::memmem::Finder;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use zeroize::{Zeroize as _, Zeroizing};

/// What a value becomes in the command's output.
pub const CONCEALED: &[u8] = b"<concealed by keyway>";

/// Values shorter than this (after trimming whitespace at both ends) are not masked: hiding every `on` or `42`
/// would garble ordinary output. `exec` names such variables in a warning.
pub const MIN_LEN: usize = 4;

/// Bytes read from the command at a time: the size of a pipe's buffer, so a busy command's output moves in few
/// reads (smaller reads cost throughput: docs/benchmarks.md, "`keyway exec --mask` throughput"); a read
/// returns what is there at once.
const READ: usize = 64 * 1024;

/// Values shorter than this get no base64 forms, and lines shorter than this of a value of several lines are
/// not hidden alone: a fragment of a few base64 letters, or a short line (`}`, `true`), turns up by chance.
pub const MIN_PART_LEN: usize = 8;

/// The forms a command commonly prints a value in besides the value itself, as GitHub Actions' log masking
/// also hides them: base64 (standard and URL-safe alphabets, at each of the three byte offsets the value can
/// start at inside a longer encoded text, so `Authorization: Basic base64(user:token)` is covered; only the
/// letters that the value alone decides), percent-encoding (a query string, `curl --data-urlencode`), a
/// JSON string's escapes, and each line of a value of several lines (a PEM key printed line by line). Only
/// forms that differ from the value, each in a zeroizing buffer; `value` is trimmed as [`Masker::new`] trims
/// it.
pub fn encoded_forms(value: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    use base64::Engine as _;
    let value = value.trim_ascii();
    let mut forms: Vec<Zeroizing<Vec<u8>>> = Vec::new();
    if value.len() < MIN_LEN {
        return forms;
    }
    let mut add = |form: Zeroizing<Vec<u8>>| {
        if form.as_slice() != value && form.len() >= MIN_LEN && !forms.contains(&form) {
            forms.push(form);
        }
    };
    if value.len() >= MIN_PART_LEN {
        for engine in [
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            for shift in 0..3 {
                let mut shifted = Zeroizing::new(vec![0; shift]);
                shifted.extend_from_slice(value);
                let encoded = Zeroizing::new(engine.encode(&shifted[..]).into_bytes());
                // Letters holding bits of the zero bytes in front, or of whatever follows the value, are not
                // the value's alone.
                let (start, end) = ((8 * shift).div_ceil(6), 8 * shifted.len() / 6);
                add(Zeroizing::new(encoded[start..end].to_vec()));
            }
        }
    }
    let mut percent = Zeroizing::new(Vec::with_capacity(value.len() * 3));
    for &byte in value {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            percent.push(byte);
        } else {
            let hex = b"0123456789ABCDEF";
            percent.extend_from_slice(&[
                b'%',
                hex[usize::from(byte >> 4)],
                hex[usize::from(byte & 15)],
            ]);
        }
    }
    add(percent);
    if let Ok(text) = std::str::from_utf8(value)
        && let Ok(json) = serde_json::to_string(text).map(|json| Zeroizing::new(json.into_bytes()))
    {
        add(Zeroizing::new(json[1..json.len() - 1].to_vec()));
    }
    if value.contains(&b'\n') {
        for line in value.split(|&b| b == b'\n').map(<[u8]>::trim_ascii) {
            if line.len() >= MIN_PART_LEN {
                add(Zeroizing::new(line.to_vec()));
            }
        }
    }
    forms
}

/// The values to hide, longest first, so that of two values starting at one place the longer is replaced.
pub struct Masker<'v> {
    finders: Vec<Finder<'v>>,
    longest: usize,
}

impl<'v> Masker<'v> {
    /// A masker for `values`; each is trimmed of surrounding whitespace (a value read from a file often ends
    /// in a newline the output does not repeat). Values shorter than [`MIN_LEN`] are left out.
    pub fn new(values: impl IntoIterator<Item = &'v [u8]>) -> Masker<'v> {
        let mut needles: Vec<&'v [u8]> = values
            .into_iter()
            .map(<[u8]>::trim_ascii)
            .filter(|v| v.len() >= MIN_LEN)
            .collect();
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Masker {
            longest: needles.first().map_or(0, |n| n.len()),
            finders: needles.into_iter().map(Finder::new).collect(),
        }
    }

    /// Moves what can be written from `pending` to `out`, values replaced. Without `eof`, the longest end of
    /// `pending` that could still grow into a value stays in it for the next read.
    fn pass(&self, pending: &mut Zeroizing<Vec<u8>>, out: &mut Zeroizing<Vec<u8>>, eof: bool) {
        let mut limit = pending.len() - if eof { 0 } else { self.held(pending) };
        let (mut pos, mut from) = (0, 0);
        while let Some((start, len)) = self.first_match(&pending[..], pos) {
            if start >= limit {
                break;
            }
            if start + len > limit {
                // A whole value that a later read could still lengthen into a longer one: decide then.
                limit = start;
                break;
            }
            out.extend_from_slice(&pending[from..start]);
            out.extend_from_slice(CONCEALED);
            pos = start + len;
            from = pos;
        }
        out.extend_from_slice(&pending[from.min(limit)..limit]);
        pending.copy_within(limit.., 0);
        let kept = pending.len() - limit;
        pending[kept..].zeroize();
        pending.truncate(kept);
    }

    /// The leftmost value in `text[pos..]` (the longest of those starting there): start and length.
    fn first_match(&self, text: &[u8], pos: usize) -> Option<(usize, usize)> {
        let mut best: Option<(usize, usize)> = None;
        for finder in &self.finders {
            if let Some(at) = finder.find(&text[pos..]) {
                let start = pos + at;
                if best.is_none_or(|(s, _)| start < s) {
                    best = Some((start, finder.needle().len()));
                }
            }
        }
        best
    }

    /// How many bytes at the end of `text` are the beginning of some value, but not yet all of it.
    fn held(&self, text: &[u8]) -> usize {
        let mut held = 0;
        for needle in self.finders.iter().map(Finder::needle) {
            let window = needle.len().saturating_sub(1).min(text.len());
            let tail = &text[text.len() - window..];
            // The longest suffix of `tail` that is a prefix of `needle`: try each place its first byte occurs.
            if let Some(at) =
                memchr::memchr_iter(needle[0], tail).find(|&at| needle.starts_with(&tail[at..]))
            {
                held = held.max(window - at);
            }
        }
        held
    }

    /// Copies `from` to `to` until `from` ends, values replaced. Stops early, dropping `from` (the command then
    /// gets EPIPE), when `to` can no longer be written.
    pub async fn relay(
        &self,
        from: Option<impl AsyncRead + Unpin>,
        mut to: impl AsyncWrite + Unpin,
    ) -> std::io::Result<()> {
        let Some(mut from) = from else {
            return Ok(()); // not piped: the command writes to keyway's own stdout and stderr
        };
        let mut read = Zeroizing::new(vec![0u8; READ]);
        let mut pending = Zeroizing::new(Vec::with_capacity(READ + self.longest));
        // Every value replaced by CONCEALED, which may be longer than it: room for the worst case up front.
        let mut out = Zeroizing::new(Vec::with_capacity(
            (READ + self.longest) * CONCEALED.len().div_ceil(MIN_LEN),
        ));
        loop {
            let n = from.read(&mut read).await?;
            pending.extend_from_slice(&read[..n]);
            read[..n].zeroize();
            self.pass(&mut pending, &mut out, n == 0);
            to.write_all(&out).await?;
            to.flush().await?;
            // Only what was written holds anything: the rest of the buffer was zeroed before, or never used.
            out.as_mut_slice().zeroize();
            out.clear();
            if n == 0 {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` cut at `cuts` (clamped to its length), in order.
    fn cut_at(text: &str, cuts: Vec<usize>) -> Vec<&str> {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(text.len())).collect();
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut at = 0;
        for cut in cuts {
            pieces.push(&text[at..cut]);
            at = cut;
        }
        pieces.push(&text[at..]);
        pieces
    }

    /// `text` through `masker` in one read, to its end.
    fn mask_once(masker: &Masker<'_>, text: &str) -> String {
        let mut pending = Zeroizing::new(text.as_bytes().to_vec());
        let mut out = Zeroizing::new(Vec::new());
        masker.pass(&mut pending, &mut out, true);
        String::from_utf8(out.to_vec()).unwrap()
    }

    fn mask_in_pieces(values: &[&str], pieces: &[&str]) -> String {
        let masker = Masker::new(values.iter().map(|v| v.as_bytes()));
        let mut pending = Zeroizing::new(Vec::new());
        let mut out = Zeroizing::new(Vec::new());
        for piece in pieces {
            pending.extend_from_slice(piece.as_bytes());
            masker.pass(&mut pending, &mut out, false);
        }
        masker.pass(&mut pending, &mut out, true);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn values_are_concealed_wherever_the_reads_split_them() {
        let text = "clone https://x-access-token:ghp_abc123@github.com/o/r and ghp_abc123\n";
        let want = "clone https://x-access-token:<concealed by keyway>@github.com/o/r and <concealed by keyway>\n";
        assert_eq!(mask_in_pieces(&["ghp_abc123\n"], &[text]), want);
        for cut in 0..text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(
                mask_in_pieces(&["ghp_abc123"], &[a, b]),
                want,
                "cut at {cut}"
            );
        }
        let bytes: Vec<String> = text.chars().map(String::from).collect();
        let pieces: Vec<&str> = bytes.iter().map(String::as_str).collect();
        assert_eq!(mask_in_pieces(&["ghp_abc123"], &pieces), want);
    }

    #[test]
    fn the_longer_of_two_values_wins_and_short_values_are_left_alone() {
        assert_eq!(
            mask_in_pieces(
                &["secret", "secret-long"],
                &["a secret-", "long b secret c"]
            ),
            "a <concealed by keyway> b <concealed by keyway> c"
        );
        assert_eq!(mask_in_pieces(&["on", " 42 "], &["on 42 on"]), "on 42 on");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            std::env::var("KEYWAY_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000)
        ))]
        // A small alphabet, so values recur, overlap themselves and are cut at every place.
        #[test]
        fn streaming_conceals_as_a_replace_of_the_whole_text_would(
            value in "[ab]{4,9}",
            text in "[abc]{0,80}",
            cuts in proptest::collection::vec(0usize..80, 0..6),
        ) {
            let pieces = cut_at(&text, cuts);
            let want = text.replace(&value, "<concealed by keyway>");
            proptest::prop_assert_eq!(mask_in_pieces(&[&value], &pieces), want);
        }

        // Several values, as a value and its forms are: overlapping, one inside another, one the start of
        // another. Streamed, as the leftmost match (the longest of those starting there) replaced in turn.
        #[test]
        fn streaming_several_values_conceals_the_leftmost_longest_in_turn(
            values in proptest::collection::vec("[ab]{4,9}", 1..5),
            text in "[abc]{0,80}",
            cuts in proptest::collection::vec(0usize..80, 0..6),
        ) {
            let mut want = String::new();
            let mut pos = 0;
            while pos < text.len() {
                let found = values.iter().filter(|v| text[pos..].starts_with(v.as_str())).map(String::len).max();
                if let Some(len) = found {
                    want.push_str("<concealed by keyway>");
                    pos += len;
                } else {
                    want.push_str(&text[pos..=pos]);
                    pos += 1;
                }
            }
            let pieces = cut_at(&text, cuts);
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            proptest::prop_assert_eq!(mask_in_pieces(&values, &pieces), want);
        }
    }

    #[test]
    fn encoded_forms_of_a_value_are_concealed_too() {
        use base64::Engine as _;
        let value = "ghp_a+b/c?d=e&f\"g\\h\u{e9}";
        let forms = encoded_forms(format!("{value}\n").as_bytes());
        let masker = Masker::new(
            std::iter::once(value.as_bytes()).chain(forms.iter().map(|f| f.as_slice())),
        );
        let mask = |text: &str| mask_once(&masker, text);
        let concealed = |text: &str| {
            let out = mask(text);
            out.contains("<concealed by keyway>") && !out.contains(text)
        };
        for engine in [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE,
        ] {
            for prefix in ["", "u", "us", "user:", "x-access-token:"] {
                for suffix in ["", "!", "!!", "!!!"] {
                    let encoded = engine.encode(format!("{prefix}{value}{suffix}"));
                    assert!(
                        concealed(&encoded),
                        "{prefix}…{suffix}: {encoded} -> {}",
                        mask(&encoded)
                    );
                }
            }
        }
        let percent = "ghp_a%2Bb%2Fc%3Fd%3De%26f%22g%5Ch%C3%A9";
        assert!(
            mask(&format!("GET /?token={percent} HTTP/1.1"))
                .starts_with("GET /?token=<concealed by keyway> HTTP")
        );
        let json = serde_json::to_string(&serde_json::json!({"token": value})).unwrap();
        assert_eq!(mask(&json), r#"{"token":"<concealed by keyway>"}"#);
        // Each line of a value of several lines, when it is long enough to be told from chance.
        let pem = "-----BEGIN KEY-----\r\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\r\nq1w2e3r4\r\nabc\r\n-----END KEY-----\r\n";
        let forms = encoded_forms(pem.as_bytes());
        let masker = Masker::new(forms.iter().map(|f| f.as_slice()));
        assert_eq!(
            mask_once(
                &masker,
                "got MIIEvQIBADANBgkqhkiG9w0BAQEFAASC and q1w2e3r4, abc"
            ),
            "got <concealed by keyway> and <concealed by keyway>, abc"
        );
        // Short values get no base64 forms (`test` is dGVzdA== in base64: left as it is); forms equal to the
        // value are not repeated.
        assert!(encoded_forms(b"abcdefg").is_empty());
        assert_eq!(encoded_forms(b"abcdefgh").len(), 3);
        let short = encoded_forms(b"test");
        let masker = Masker::new(
            std::iter::once(b"test".as_slice()).chain(short.iter().map(|f| f.as_slice())),
        );
        assert_eq!(
            mask_once(&masker, "test dGVzdA=="),
            "<concealed by keyway> dGVzdA=="
        );
    }

    #[test]
    fn output_that_cannot_be_a_value_is_not_held_back() {
        let masker = Masker::new([b"ghp_abc123".as_slice()]);
        let mut pending = Zeroizing::new(b"Password: ghp".to_vec());
        let mut out = Zeroizing::new(Vec::new());
        masker.pass(&mut pending, &mut out, false);
        assert_eq!(&out[..], b"Password: ");
        assert_eq!(&pending[..], b"ghp");
        let mut pending = Zeroizing::new(b"Continue? [y/N] ".to_vec());
        out.clear();
        masker.pass(&mut pending, &mut out, false);
        assert_eq!(&out[..], b"Continue? [y/N] ");
        assert!(pending.is_empty());
    }
}
