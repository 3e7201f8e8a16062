//! What routing needs from a request, read from wherever its protocol keeps
//! it: the arm override and the sticky unit id, from headers (gRPC metadata),
//! cookies or request parameters. Routing itself receives plain values.

use crate::routing::{RouteKeys, StickyKey};

/// The header (and gRPC metadata key) that picks an arm explicitly.
pub const ARM_OVERRIDE: &str = "x-podium-arm";

/// A request's headers (or gRPC metadata) and request-level parameters.
pub trait RequestKeys {
    /// A header or metadata value, by lower-case name.
    fn header(&self, name: &str) -> Option<&str>;
    /// A request-level parameter, as text.
    fn parameter(&self, name: &str) -> Option<String>;
}

/// A request that carries nothing routing could use.
pub struct NoKeys;

impl RequestKeys for NoKeys {
    fn header(&self, _: &str) -> Option<&str> {
        None
    }
    fn parameter(&self, _: &str) -> Option<String> {
        None
    }
}

/// The values of one request that routing reads, owned so they outlive the
/// borrow of the request.
#[derive(Debug, Default)]
pub struct Keys {
    arm_override: Option<String>,
    unit_id: Option<String>,
}

impl Keys {
    /// Reads the arm override, and the unit id where `sticky` says it is.
    pub fn read(request: &dyn RequestKeys, sticky: Option<&StickyKey>) -> Keys {
        let unit_id = sticky.and_then(|key| match key {
            StickyKey::Header(h) => request.header(h).map(str::to_string),
            StickyKey::Parameter(p) => request.parameter(p),
            StickyKey::Cookie(name) => request.header("cookie").and_then(|c| cookie(c, name)),
        });
        Keys {
            arm_override: request
                .header(ARM_OVERRIDE)
                .filter(|a| !a.is_empty())
                .map(str::to_string),
            unit_id,
        }
    }

    pub fn as_route_keys(&self) -> RouteKeys<'_> {
        RouteKeys {
            arm_override: self.arm_override.as_deref(),
            unit_id: self.unit_id.as_deref(),
        }
    }
}

/// The value of cookie `name` in a `cookie` header (`a=1; b=2`).
fn cookie(header: &str, name: &str) -> Option<String> {
    header.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Headers as pairs; a parameter `p` is the pair `("param:p", value)`.
    pub(crate) struct Map(pub Vec<(&'static str, &'static str)>);
    impl RequestKeys for Map {
        fn header(&self, name: &str) -> Option<&str> {
            self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
        }
        fn parameter(&self, name: &str) -> Option<String> {
            self.header(&format!("param:{name}")).map(str::to_string)
        }
    }

    #[test]
    fn unit_ids_come_from_where_the_endpoint_says() {
        let request = Map(vec![
            ("x-user-id", "u1"),
            ("cookie", "theme=dark; uid=u2; x=1"),
            ("param:user", "u3"),
            ("x-podium-arm", "challenger"),
        ]);
        let unit = |key: StickyKey| Keys::read(&request, Some(&key)).unit_id;
        assert_eq!(
            unit(StickyKey::Header("x-user-id".into())).as_deref(),
            Some("u1")
        );
        assert_eq!(unit(StickyKey::Cookie("uid".into())).as_deref(), Some("u2"));
        assert_eq!(
            unit(StickyKey::Parameter("user".into())).as_deref(),
            Some("u3")
        );
        assert_eq!(unit(StickyKey::Cookie("missing".into())), None);
        let keys = Keys::read(&request, None);
        assert_eq!(keys.unit_id, None);
        assert_eq!(keys.as_route_keys().arm_override, Some("challenger"));
        assert_eq!(
            Keys::read(&Map(vec![("x-podium-arm", "")]), None).arm_override,
            None
        );
    }
}
