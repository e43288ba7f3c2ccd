//! File modes as Keyway's settings write them: octal text, `"0400"` or `"0o400"`. One parser for every
//! place a mode is read (`keyway render --mode`, the webhook's `keyway.dev/mode`, the daemon's `socket_mode`).

use std::fmt;

/// Permission bits of a file (at most `0o777`: no set-id or sticky bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileMode(u32);

impl FileMode {
    /// The mode from its bits; `None` above `0o777`.
    pub fn new(bits: u32) -> Option<FileMode> {
        (bits <= 0o777).then_some(FileMode(bits))
    }

    /// The permission bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether the owner may read.
    pub fn owner_reads(self) -> bool {
        self.0 & 0o400 != 0
    }

    /// Whether users other than the owner and the group may read.
    pub fn others_read(self) -> bool {
        self.0 & 0o007 != 0
    }
}

impl std::str::FromStr for FileMode {
    type Err = String;

    fn from_str(text: &str) -> Result<FileMode, String> {
        u32::from_str_radix(text.trim_start_matches("0o"), 8)
            .ok()
            .and_then(FileMode::new)
            .ok_or_else(|| format!("`{text}` is not an octal file mode such as 0400"))
    }
}

impl fmt::Display for FileMode {
    /// Four octal digits, as `chmod` takes them: `0400`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::FileMode;

    #[test]
    fn octal_text_reads_and_prints_back() {
        for (text, bits) in [("0400", 0o400), ("0o640", 0o640), ("600", 0o600), ("0", 0)] {
            let mode: FileMode = text.parse().unwrap();
            assert_eq!(mode.bits(), bits, "{text}");
        }
        assert_eq!("0o640".parse::<FileMode>().unwrap().to_string(), "0640");
        for bad in ["1000", "0999", "rw", "", "-1", "04000"] {
            assert!(bad.parse::<FileMode>().is_err(), "{bad}");
        }
    }
}
