//! The credentials files: `--api-keys` (`[[key]]` entries) and
//! `--admin-tokens` (`[[token]]` entries), TOML, each secret stored only as
//! its SHA-256.
//!
//! A plain SHA-256 is the right hash here: keys and tokens are high-entropy
//! random strings (`podium keys new` makes 256-bit ones), so there is no
//! dictionary to guess from and a slow password hash would only slow every
//! request down.
//!
//! Parsing is strict: an unknown field, a hash that is not 64 hex digits, a
//! repeated name or hash is an error that names the entry and its line.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use toml::Spanned;

/// The SHA-256 of a key or token.
pub type Digest = [u8; 32];

/// Names that mean something else in the audit log and the alias history.
const RESERVED: [&str; 2] = ["admin", "loopback"];

/// One API key of the `--api-keys` file.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    /// Shown in the inference table's `requester` column, metrics and logs.
    pub name: String,
    pub sha256: Digest,
    /// Sustained calls per second and bucket size; None: unlimited.
    pub limit: Option<Limit>,
    /// The endpoints (or models) the key may call; None: all.
    pub endpoints: Option<HashSet<String>>,
}

/// A token bucket's shape: `rate` calls per second sustained, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub rate: f64,
    pub burst: u32,
}

/// One admin token of the `--admin-tokens` file.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEntry {
    /// Shown in the audit log and as `admin:NAME` in the alias history.
    pub name: String,
    pub sha256: Digest,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    key: Vec<Spanned<RawKey>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: String,
    sha256: String,
    rate: Option<f64>,
    burst: Option<u32>,
    endpoints: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<Spanned<RawToken>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    sha256: String,
}

/// Parses an `--api-keys` file.
pub fn parse_keys(text: &str) -> Result<Vec<KeyEntry>, String> {
    let file: KeysFile = toml::from_str(text).map_err(|e| toml_error(&e, "[[key]]"))?;
    let mut seen = Seen::default();
    file.key
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let at = Place::new(text, &raw, "key", i);
            let raw = raw.into_inner();
            let sha256 = seen.check(&at, &raw.name, &raw.sha256, false)?;
            let limit = match (raw.rate, raw.burst) {
                (None, None) => None,
                (None, Some(_)) => {
                    return Err(at.error("burst needs a rate (calls per second); add rate = N"))
                }
                (Some(rate), _) if !(rate.is_finite() && rate > 0.0) => {
                    return Err(at.error(&format!(
                        "rate {rate} is not a positive number of calls per second; remove it for no limit"
                    )))
                }
                (Some(_), Some(0)) => return Err(at.error("burst must be at least 1")),
                (Some(rate), burst) => Some(Limit {
                    rate,
                    // The default bucket holds one second of calls.
                    burst: burst.unwrap_or_else(|| rate.ceil().min(u32::MAX as f64) as u32),
                }),
            };
            let endpoints = match raw.endpoints {
                None => None,
                Some(list) if list.is_empty() => {
                    return Err(at.error(
                        "endpoints is empty, so the key could call nothing; list endpoints, or remove the field to allow all",
                    ))
                }
                Some(list) => Some(list.into_iter().collect()),
            };
            Ok(KeyEntry {
                name: raw.name,
                sha256,
                limit,
                endpoints,
            })
        })
        .collect()
}

/// Parses an `--admin-tokens` file.
pub fn parse_tokens(text: &str) -> Result<Vec<TokenEntry>, String> {
    let file: TokensFile = toml::from_str(text).map_err(|e| toml_error(&e, "[[token]]"))?;
    let mut seen = Seen::default();
    file.token
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let at = Place::new(text, &raw, "token", i);
            let raw = raw.into_inner();
            let sha256 = seen.check(&at, &raw.name, &raw.sha256, true)?;
            Ok(TokenEntry {
                name: raw.name,
                sha256,
            })
        })
        .collect()
}

/// The hex SHA-256 of `secret`, as the files store it.
pub fn sha256_hex(secret: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a presented key or token.
pub fn digest(secret: &str) -> Digest {
    use sha2::Digest as _;
    sha2::Sha256::digest(secret.as_bytes()).into()
}

fn toml_error(e: &toml::de::Error, table: &str) -> String {
    format!(
        "{} (each entry is a {table} table with name = \"...\" and sha256 = \"<64 hex digits>\")",
        e.to_string().trim_end()
    )
}

/// Where an entry is, for error messages: `[[key]] #2 "checkout" (line 7)`.
struct Place {
    what: String,
}

impl Place {
    fn new<T>(text: &str, raw: &Spanned<T>, table: &str, index: usize) -> Place {
        let line = text[..raw.span().start.min(text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1;
        Place {
            what: format!("[[{table}]] #{} (line {line})", index + 1),
        }
    }

    fn error(&self, why: &str) -> String {
        format!("{}: {why}", self.what)
    }
}

/// Names and hashes already seen in a file.
#[derive(Default)]
struct Seen {
    names: HashMap<String, String>,
    hashes: HashMap<Digest, String>,
}

impl Seen {
    /// Checks an entry's name and hash and remembers them; returns the hash.
    fn check(
        &mut self,
        at: &Place,
        name: &str,
        sha256: &str,
        admin: bool,
    ) -> Result<Digest, String> {
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(at.error(&format!(
                "name {name:?} must be 1 to 64 letters, digits, '-', '_' or '.' (it labels metrics and table rows)"
            )));
        }
        if admin && RESERVED.contains(&name) {
            return Err(at.error(&format!(
                "the name \"{name}\" is reserved (\"admin\" is --admin-token's, \"loopback\" a token-less local call); choose another"
            )));
        }
        let digest = parse_hex(sha256).ok_or_else(|| {
            at.error(&format!(
                "\"{name}\": sha256 must be 64 hex digits (the SHA-256 of the secret, as `podium keys new` prints it), not {:?}",
                truncate(sha256)
            ))
        })?;
        if let Some(first) = self.names.insert(name.to_string(), at.what.clone()) {
            return Err(at.error(&format!(
                "the name \"{name}\" is already used by {first}; names must be unique"
            )));
        }
        if let Some(first) = self.hashes.insert(digest, name.to_string()) {
            return Err(at.error(&format!(
                "\"{name}\" has the same sha256 as \"{first}\"; each secret must be different"
            )));
        }
        Ok(digest)
    }
}

fn parse_hex(text: &str) -> Option<Digest> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// A value quoted in an error, cut short (it may be a secret pasted by mistake).
fn truncate(text: &str) -> String {
    match text.char_indices().nth(8) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(secret: &str) -> String {
        sha256_hex(secret)
    }

    #[test]
    fn reads_keys_with_and_without_limits() {
        let text = format!(
            r#"
[[key]]
name = "checkout"
sha256 = "{}"
rate = 100
burst = 200
endpoints = ["fraud"]

[[key]]
name = "batch"
sha256 = "{}"
rate = 2.5
"#,
            hash("a"),
            hash("b").to_uppercase()
        );
        let keys = parse_keys(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].name, "checkout");
        assert_eq!(keys[0].sha256, digest("a"));
        assert_eq!(
            keys[0].limit,
            Some(Limit {
                rate: 100.0,
                burst: 200
            })
        );
        assert_eq!(
            keys[0].endpoints,
            Some(HashSet::from(["fraud".to_string()]))
        );
        // Upper-case hex is the same hash; burst defaults to a second of calls.
        assert_eq!(keys[1].sha256, digest("b"));
        assert_eq!(
            keys[1].limit,
            Some(Limit {
                rate: 2.5,
                burst: 3
            })
        );
        assert_eq!(keys[1].endpoints, None);
        assert!(parse_keys("").unwrap().is_empty());
    }

    #[test]
    fn refuses_what_would_be_a_silent_mistake() {
        let h = hash("a");
        let cases = [
            (
                format!("[[key]]\nname = \"a\"\nsha256 = \"{h}\"\nrates = 5\n"),
                "unknown field `rates`",
            ),
            (
                "[[key]]\nname = \"a\"\nsha256 = \"abc\"\n".to_string(),
                "[[key]] #1 (line 1): \"a\": sha256 must be 64 hex digits",
            ),
            (
                format!("[[key]]\nname = \"a\"\nsha256 = \"{}\"\n", "g".repeat(64)),
                "must be 64 hex digits",
            ),
            (
                format!(
                    "[[key]]\nname = \"a\"\nsha256 = \"{h}\"\n\n[[key]]\nname = \"a\"\nsha256 = \"{}\"\n",
                    hash("b")
                ),
                "[[key]] #2 (line 5): the name \"a\" is already used by [[key]] #1 (line 1)",
            ),
            (
                format!("[[key]]\nname = \"a\"\nsha256 = \"{h}\"\n[[key]]\nname = \"b\"\nsha256 = \"{h}\"\n"),
                "[[key]] #2 (line 4): \"b\" has the same sha256 as \"a\"",
            ),
            (
                format!("[[key]]\nname = \"a\"\nsha256 = \"{h}\"\nburst = 3\n"),
                "burst needs a rate",
            ),
            (
                format!("[[key]]\nname = \"a\"\nsha256 = \"{h}\"\nrate = 0\n"),
                "rate 0 is not a positive number",
            ),
            (
                format!("[[key]]\nname = \"a\"\nsha256 = \"{h}\"\nrate = 1\nburst = 0\n"),
                "burst must be at least 1",
            ),
            (
                format!("[[key]]\nname = \"a\"\nsha256 = \"{h}\"\nendpoints = []\n"),
                "endpoints is empty",
            ),
            (
                format!("[[key]]\nname = \"a b\"\nsha256 = \"{h}\"\n"),
                "must be 1 to 64 letters",
            ),
            (
                format!("[[keys]]\nname = \"a\"\nsha256 = \"{h}\"\n"),
                "unknown field `keys`",
            ),
            (format!("[[key]]\nsha256 = \"{h}\"\n"), "missing field `name`"),
        ];
        for (text, expected) in cases {
            let err = parse_keys(&text).unwrap_err();
            assert!(
                err.contains(expected),
                "{text}\n→ {err}\n(expected {expected:?})"
            );
        }
    }

    #[test]
    fn a_secret_pasted_as_the_hash_is_not_echoed_whole() {
        let err =
            parse_keys("[[key]]\nname = \"a\"\nsha256 = \"pk_supersecretvalue\"\n").unwrap_err();
        assert!(!err.contains("supersecretvalue"), "{err}");
    }

    #[test]
    fn tokens_have_no_limits_and_no_reserved_names() {
        let h = hash("t");
        let tokens = parse_tokens(&format!(
            "[[token]]\nname = \"ops-alice\"\nsha256 = \"{h}\"\n"
        ))
        .unwrap();
        assert_eq!(
            tokens,
            vec![TokenEntry {
                name: "ops-alice".into(),
                sha256: digest("t")
            }]
        );
        let err = parse_tokens(&format!(
            "[[token]]\nname = \"x\"\nsha256 = \"{h}\"\nrate = 1\n"
        ))
        .unwrap_err();
        assert!(err.contains("unknown field `rate`"), "{err}");
        let err =
            parse_tokens(&format!("[[token]]\nname = \"admin\"\nsha256 = \"{h}\"\n")).unwrap_err();
        assert!(err.contains("reserved"), "{err}");
    }
}
