//! `podium keys new`: a random API key (or admin token), printed once,
//! with the entry to append to the `--api-keys` (or `--admin-tokens`) file.

use clap::{Args, Subcommand};

use crate::auth::file::{parse_keys, parse_tokens, sha256_hex};
use crate::auth::new_secret;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a new API key: prints the key (once; only its hash is stored)
    /// and the [[key]] entry to append to the --api-keys file.
    New(NewKey),
}

#[derive(Args)]
pub struct NewKey {
    /// The key's name: shown in the inference table's requester column,
    /// metrics and logs (letters, digits, '-', '_', '.').
    name: String,
    /// Sustained calls per second the key may make [default: unlimited].
    #[arg(long)]
    rate: Option<f64>,
    /// Calls the key may make at once before the rate applies [default: one second's worth].
    #[arg(long, requires = "rate")]
    burst: Option<u32>,
    /// The endpoints (or models) the key may call, comma-separated [default: all].
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Make an admin token for the --admin-tokens file instead (no rate or endpoints).
    #[arg(long, conflicts_with_all = ["rate", "burst", "endpoints"])]
    admin: bool,
}

impl KeysCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            KeysCommand::New(new) => new.run(),
        }
    }
}

impl NewKey {
    fn run(self) -> anyhow::Result<()> {
        let (secret, entry) = self.make().map_err(|e| anyhow::anyhow!(e))?;
        let (what, file) = if self.admin {
            ("admin token", "--admin-tokens")
        } else {
            ("API key", "--api-keys")
        };
        eprintln!(
            "podium: new {what} \"{}\"; it is shown only now (the file keeps its SHA-256). Append the entry below to the {file} file.",
            self.name
        );
        println!("{secret}");
        println!();
        print!("{entry}");
        Ok(())
    }

    /// The secret and its TOML entry, checked by the same parser the
    /// server uses, so what is printed is what the server accepts.
    fn make(&self) -> Result<(String, String), String> {
        let secret = new_secret(if self.admin { "pa_" } else { "pk_" })?;
        let name = toml_string(&self.name);
        let sha256 = sha256_hex(&secret);
        let entry = if self.admin {
            let entry = format!("[[token]]\nname = {name}\nsha256 = \"{sha256}\"\n");
            parse_tokens(&entry)?;
            entry
        } else {
            let mut entry = format!("[[key]]\nname = {name}\nsha256 = \"{sha256}\"\n");
            if let Some(rate) = self.rate {
                entry += &format!("rate = {rate}\n");
            }
            if let Some(burst) = self.burst {
                entry += &format!("burst = {burst}\n");
            }
            if !self.endpoints.is_empty() {
                let list: Vec<String> = self.endpoints.iter().map(|e| toml_string(e)).collect();
                entry += &format!("endpoints = [{}]\n", list.join(", "));
            }
            parse_keys(&entry)?;
            entry
        };
        Ok((secret, entry))
    }
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::file::digest;

    fn new(name: &str, rate: Option<f64>, endpoints: &[&str], admin: bool) -> NewKey {
        NewKey {
            name: name.into(),
            rate,
            burst: None,
            endpoints: endpoints.iter().map(|s| s.to_string()).collect(),
            admin,
        }
    }

    #[test]
    fn the_entry_holds_the_hash_of_the_printed_key() {
        let (secret, entry) = new("checkout", Some(100.0), &["fraud", "churn"], false)
            .make()
            .unwrap();
        assert!(secret.starts_with("pk_"));
        assert!(!entry.contains(&secret), "the file never holds the key");
        let keys = parse_keys(&entry).unwrap();
        assert_eq!(keys[0].name, "checkout");
        assert_eq!(keys[0].sha256, digest(&secret));
        assert_eq!(keys[0].limit.map(|l| l.rate), Some(100.0));
        assert_eq!(keys[0].endpoints.as_ref().map(|e| e.len()), Some(2));
        let (token, entry) = new("ops-alice", None, &[], true).make().unwrap();
        assert!(token.starts_with("pa_"));
        assert_eq!(parse_tokens(&entry).unwrap()[0].sha256, digest(&token));
    }

    #[test]
    fn a_bad_name_is_refused_before_a_key_is_printed() {
        let err = new("two words", None, &[], false).make().unwrap_err();
        assert!(err.contains("must be 1 to 64 letters"), "{err}");
        let err = new("x", Some(-1.0), &[], false).make().unwrap_err();
        assert!(err.contains("not a positive number"), "{err}");
    }
}
