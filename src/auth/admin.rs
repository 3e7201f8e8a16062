//! Who is calling the admin API: the single `--admin-token` (named
//! `admin`), a named token of `--admin-tokens` (re-read when the file
//! changes), or — with neither configured — any client on a loopback
//! listener.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use subtle::ConstantTimeEq;

use super::file::{self, Digest, TokenEntry};
use super::watch::{Watched, RELOAD_INTERVAL};

/// The caller of one admin request, once its token was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCaller {
    /// No token is configured and the listener is loopback-only.
    Loopback,
    /// The `--admin-token`.
    Token,
    /// A token of the `--admin-tokens` file, by its name.
    Named(Arc<str>),
    /// No token is configured; the TLS client certificate (verified against
    /// `--admin-client-ca`) with this subject CN admitted the call.
    Certificate(Arc<str>),
}

impl AdminCaller {
    /// The name in the audit log: `loopback`, `admin`, the token's name,
    /// or `cert:CN`.
    pub fn audit_name(&self) -> String {
        match self {
            AdminCaller::Loopback => "loopback".into(),
            AdminCaller::Token => "admin".into(),
            AdminCaller::Named(name) => name.to_string(),
            AdminCaller::Certificate(cn) => format!("cert:{cn}"),
        }
    }

    /// Who the alias history says made a change: `admin` (as before named
    /// tokens), or `admin:NAME`.
    pub fn by(&self) -> String {
        match self {
            AdminCaller::Loopback | AdminCaller::Token => "admin".into(),
            AdminCaller::Named(name) => format!("admin:{name}"),
            AdminCaller::Certificate(cn) => format!("admin:cert:{cn}"),
        }
    }
}

/// The named tokens of one read of the file, by the SHA-256 of the token.
pub struct TokenRing {
    by_hash: HashMap<Digest, Arc<str>>,
}

impl TokenRing {
    pub fn parse(text: &str, _previous: Option<&TokenRing>) -> Result<TokenRing, String> {
        let by_hash = file::parse_tokens(text)?
            .into_iter()
            .map(|TokenEntry { name, sha256 }| (sha256, Arc::from(name)))
            .collect();
        Ok(TokenRing { by_hash })
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// The tokens the admin API accepts; at least one source is configured.
pub struct AdminTokens {
    single: Option<String>,
    named: Option<(Arc<Watched<TokenRing>>, Digest)>,
}

impl AdminTokens {
    /// `single` is `--admin-token`; `file` is `--admin-tokens`, read now
    /// (an error names the file and the entry). None when neither is set.
    pub fn new(single: Option<String>, file: Option<&Path>) -> Result<Option<AdminTokens>, String> {
        let named = file
            .map(|path| {
                Watched::load(
                    path,
                    "podium_admin_tokens_reload_errors_total",
                    TokenRing::parse,
                )
            })
            .transpose()?;
        let single = single.filter(|t| !t.is_empty());
        Ok((single.is_some() || named.is_some()).then_some(AdminTokens { single, named }))
    }

    /// The caller presenting `token`, if it is one of ours.
    pub fn identify(&self, token: Option<&str>) -> Option<AdminCaller> {
        let token = token?;
        if let Some(single) = &self.single {
            if bool::from(token.as_bytes().ct_eq(single.as_bytes())) {
                return Some(AdminCaller::Token);
            }
        }
        let (named, _) = self.named.as_ref()?;
        let name = named.current().by_hash.get(&file::digest(token)).cloned()?;
        Some(AdminCaller::Named(name))
    }

    /// Re-reads the tokens file every second while the task runs (None
    /// without a file).
    pub fn spawn_reload(&self) -> Option<tokio::task::JoinHandle<()>> {
        let (named, first_read) = self.named.as_ref()?;
        let path = named.path().display().to_string();
        Some(
            named.spawn_reload(RELOAD_INTERVAL, *first_read, move |tokens| {
                tracing::info!("admin tokens reloaded from {path}: {} tokens", tokens.len());
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::file::sha256_hex;

    #[test]
    fn the_single_token_and_named_ones_work_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(
            &path,
            format!(
                "[[token]]\nname = \"ops-alice\"\nsha256 = \"{}\"\n",
                sha256_hex("t-alice")
            ),
        )
        .unwrap();
        let tokens = AdminTokens::new(Some("s3cret".into()), Some(&path))
            .unwrap()
            .unwrap();
        assert_eq!(tokens.identify(Some("s3cret")), Some(AdminCaller::Token));
        let alice = tokens.identify(Some("t-alice")).unwrap();
        assert_eq!(
            (alice.audit_name().as_str(), alice.by().as_str()),
            ("ops-alice", "admin:ops-alice")
        );
        assert_eq!(tokens.identify(Some("s3cre")), None);
        assert_eq!(tokens.identify(None), None);
        assert_eq!(AdminCaller::Token.by(), "admin");
        assert!(AdminTokens::new(None, None).unwrap().is_none());
        assert!(AdminTokens::new(Some(String::new()), None)
            .unwrap()
            .is_none());
    }
}
