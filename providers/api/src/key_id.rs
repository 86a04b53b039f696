//! What a key id may look like. Ids are printed in tables, logs, commit trailers and pull
//! requests, so one from a plugin or a hand-edited manifest must not carry a newline, an
//! ANSI escape, a BEL or a bidi override: every id from every provider and every manifest
//! is checked here, and anything shown to explain a rejection is escaped first.

use crate::{
    Capabilities, KeyId, KeyInfo, Minted, Provider, ProviderError, ProviderResult, Revoke, Revoked,
    Target,
};
use async_trait::async_trait;

/// The longest key id accepted from any source.
pub const MAX_KEY_ID_LEN: usize = 128;

/// The shape of `source`'s key ids, for messages.
pub fn key_id_format(source: &str) -> &'static str {
    match source {
        "aws" => "an access key id: AKIA or ASIA followed by 16 capital letters or digits",
        "gcp" => "a service-account key id: 40 hex digits",
        "azure" => "a password credential id: a GUID like 00000000-0000-0000-0000-000000000000",
        _ => "1 to 128 printable ASCII characters, no spaces",
    }
}

/// Whether `id` is a valid key id for `source`: every source's ids are 1–128 printable
/// ASCII characters without spaces; the built-in sources' ids have their cloud's format.
pub fn is_valid_key_id(source: &str, id: &str) -> bool {
    let printable =
        !id.is_empty() && id.len() <= MAX_KEY_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic());
    if !printable {
        return false;
    }
    match source {
        "aws" => {
            id.len() == 20
                && (id.starts_with("AKIA") || id.starts_with("ASIA"))
                && id[4..]
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        }
        "gcp" => id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "azure" => {
            let parts: Vec<&str> = id.split('-').collect();
            parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
                && parts
                    .iter()
                    .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
        }
        _ => true,
    }
}

/// `s` safe to print: control and non-ASCII characters escaped (`\n`, `\u{1b}`,
/// `\u{202e}`), cut to 64 characters with the rest counted.
pub fn escape_for_display(s: &str) -> String {
    let mut out = String::new();
    for (shown, c) in s.chars().enumerate() {
        if shown >= 64 {
            let rest = s.chars().count() - shown;
            out.push_str(&format!("… ({rest} more characters)"));
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

/// A provider whose key ids are checked before anything prints or stores them: `keys`
/// fails on an id of the wrong shape, and a `mint` that returns one deletes that key again
/// and fails (the id can never be written to a manifest).
#[derive(Debug)]
pub struct Checked<P> {
    inner: P,
}

impl<P: Provider> Checked<P> {
    /// Wraps `inner`.
    pub fn new(inner: P) -> Self {
        Checked { inner }
    }
}

fn invalid(provider: &str, operation: &'static str, id: &str, extra: &str) -> ProviderError {
    ProviderError::Permanent {
        provider: provider.to_owned(),
        operation,
        message: format!(
            "returned the key id `{}`, which is not {}{extra}",
            escape_for_display(id),
            key_id_format(provider)
        ),
    }
}

#[async_trait]
impl<P: Provider> Provider for Checked<P> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn preflight(&self, t: &Target) -> ProviderResult<()> {
        self.inner.preflight(t).await
    }

    async fn keys(&self, t: &Target) -> ProviderResult<Vec<KeyInfo>> {
        let keys = self.inner.keys(t).await?;
        if let Some(k) = keys.iter().find(|k| !is_valid_key_id(self.name(), &k.id.0)) {
            return Err(invalid(self.name(), "keys", &k.id.0, ""));
        }
        Ok(keys)
    }

    async fn mint(&self, t: &Target) -> ProviderResult<Minted> {
        let m = self.inner.mint(t).await?;
        if is_valid_key_id(self.name(), &m.key_id.0) {
            return Ok(m);
        }
        let undo = match self.inner.revoke(t, &m.key_id, Revoke::Delete).await {
            Ok(_) => "; the new key was deleted again".to_owned(),
            Err(e) => format!("; deleting it again failed ({e}): delete it at the source by hand"),
        };
        Err(invalid(self.name(), "mint", &m.key_id.0, &undo))
    }

    async fn verify(&self, m: &Minted) -> ProviderResult<()> {
        self.inner.verify(m).await
    }

    async fn revoke(&self, t: &Target, key: &KeyId, how: Revoke) -> ProviderResult<Revoked> {
        self.inner.revoke(t, key, how).await
    }

    async fn usage_since(
        &self,
        t: &Target,
        key: &KeyId,
        since: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> ProviderResult<crate::Usage> {
        self.inner.usage_since(t, key, since, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_has_its_format_and_nothing_unprintable_passes() {
        assert!(is_valid_key_id("aws", "AKIAIOSFODNN7EXAMPLE"));
        assert!(is_valid_key_id("aws", "ASIAFAKE000000000001"));
        assert!(!is_valid_key_id("aws", "AKIAIOSFODNN7EXAMPL"));
        assert!(!is_valid_key_id("aws", "akiaiosfodnn7example"));
        assert!(is_valid_key_id(
            "gcp",
            "a1d4dfe1ccc98e1dcef5988c5f9897523bde0c45"
        ));
        assert!(!is_valid_key_id("gcp", "a1d4dfe1"));
        assert!(is_valid_key_id(
            "azure",
            "078c6df1-6745-9263-26f4-12513d1002ab"
        ));
        assert!(!is_valid_key_id("azure", "078c6df1674592632"));
        assert!(is_valid_key_id("vault", "vault:kv/app@3"));
        for bad in [
            "",
            "key\nid",
            "key\u{1b}[31mred",
            "bell\u{7}",
            "rtl\u{202e}txet",
            "with space",
            "ü",
            &"x".repeat(129),
        ] {
            assert!(!is_valid_key_id("vault", bad), "{bad:?}");
        }
    }

    #[test]
    fn escaping_shows_what_is_there_without_acting_on_it() {
        assert_eq!(escape_for_display("a\nb"), "a\\nb");
        assert_eq!(escape_for_display("x\u{1b}[31m"), "x\\u{1b}[31m");
        assert_eq!(escape_for_display("r\u{202e}"), "r\\u{202e}");
        let long = escape_for_display(&"y".repeat(100));
        assert!(long.ends_with("(36 more characters)"), "{long}");
    }
}
