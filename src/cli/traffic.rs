//! `podium traffic`: see or change an endpoint's split on a running server.

use clap::Subcommand;

use super::admin_client::{ArmWeight, EndpointView, Remote, ShadowShare, TrafficRequest};
use super::parse::parse_assignment;

#[derive(Subcommand)]
pub enum TrafficCommand {
    /// Show the configured endpoints: arms, weights, sticky key, shadow.
    Show {
        #[command(flatten)]
        remote: Remote,
    },
    /// Set an endpoint's weights, e.g. `podium traffic set fraud champion=50 challenger=50`.
    /// Applies at once, atomically; not written to the --config file, but stored
    /// in the registry so that every replica serving from it follows.
    Set {
        endpoint: String,
        /// ALIAS=WEIGHT for every arm.
        #[arg(required = true)]
        arms: Vec<String>,
        /// Mirror a share of requests to ALIAS=FRACTION (e.g. candidate=0.2).
        #[arg(long, conflicts_with = "no_shadow")]
        shadow: Option<String>,
        /// Stop mirroring traffic.
        #[arg(long)]
        no_shadow: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Put an endpoint back on the --config file's policy, on every replica:
    /// the split stored in the registry by `set` (or the experiment loop) is removed.
    Reset {
        endpoint: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Make the server read its --config file again (as SIGHUP does): checked
    /// first, applied to every endpoint at once, or refused with the reason
    /// while the previous configuration stays in force.
    Reload {
        #[command(flatten)]
        remote: Remote,
    },
}

impl TrafficCommand {
    /// Runs the command against `--server`; prints one line per endpoint shown.
    pub fn run(self) -> anyhow::Result<()> {
        let (TrafficCommand::Show { remote }
        | TrafficCommand::Set { remote, .. }
        | TrafficCommand::Reset { remote, .. }
        | TrafficCommand::Reload { remote }) = &self;
        let Some(admin) = remote.client()? else {
            anyhow::bail!(
                "traffic commands act on a running server: add --server http://HOST:PORT (or PODIUM_SERVER); to change a split for good, edit the --config file"
            );
        };
        match self {
            TrafficCommand::Show { .. } => {
                for endpoint in admin.endpoints()? {
                    println!("{}", endpoint_line(&endpoint));
                }
            }
            TrafficCommand::Set {
                endpoint,
                arms,
                shadow,
                no_shadow,
                ..
            } => {
                let change = traffic_request(&arms, shadow.as_deref(), no_shadow)?;
                println!("{}", endpoint_line(&admin.set_traffic(&endpoint, &change)?));
            }
            TrafficCommand::Reset { endpoint, .. } => {
                println!("{}", endpoint_line(&admin.reset_traffic(&endpoint)?));
            }
            TrafficCommand::Reload { .. } => {
                let answer = admin.reload_config()?;
                println!("{}", reload_lines(&answer));
            }
        }
        Ok(())
    }
}

/// The request for `ALIAS=WEIGHT...` and the shadow flags.
fn traffic_request(
    arms: &[String],
    shadow: Option<&str>,
    no_shadow: bool,
) -> anyhow::Result<TrafficRequest> {
    let arms = arms
        .iter()
        .map(|arm| {
            parse_assignment(arm, "WEIGHT").map(|(alias, weight)| ArmWeight { alias, weight })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let shadow = if no_shadow {
        Some(None)
    } else if let Some(shadow) = shadow {
        let (alias, fraction) = parse_assignment(shadow, "FRACTION")?;
        Some(Some(ShadowShare { alias, fraction }))
    } else {
        None
    };
    Ok(TrafficRequest { arms, shadow })
}

/// `reloaded FILE: N endpoint(s) changed`, then `ENDPOINT\tCHANGE[\tWHAT]` per endpoint.
fn reload_lines(answer: &serde_json::Value) -> String {
    let changed = answer["changed"].as_array().cloned().unwrap_or_default();
    let mut lines = vec![format!(
        "reloaded {}: {} endpoint(s) changed",
        answer["file"].as_str().unwrap_or("?"),
        changed.len()
    )];
    for c in &changed {
        let what: Vec<&str> = c["what"]
            .as_array()
            .map(|w| w.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        let mut line = format!(
            "{}\t{}",
            c["endpoint"].as_str().unwrap_or("?"),
            c["change"].as_str().unwrap_or("?")
        );
        if !what.is_empty() {
            line.push_str(&format!("\t{}", what.join(",")));
        }
        lines.push(line);
    }
    lines.join("\n")
}

/// `NAME\tmodel MODEL\tarms A=W B=W\tshadow S=F` (or `shadow -`), numbers
/// written as the admin API's JSON writes them (`1.0`, `0.25`).
fn endpoint_line(endpoint: &EndpointView) -> String {
    let arms: Vec<String> = endpoint
        .arms
        .iter()
        .map(|a| format!("{}={}", a.alias, json_number(a.weight)))
        .collect();
    let shadow = match &endpoint.shadow {
        Some(s) => format!("{}={}", s.alias, json_number(s.fraction)),
        None => "-".to_string(),
    };
    format!(
        "{}\tmodel {}\tarms {}\tshadow {}",
        endpoint.name,
        endpoint.model,
        arms.join(" "),
        shadow
    )
}

/// A number as JSON writes it: `50.0` rather than Rust's `50`.
fn json_number(x: f64) -> String {
    serde_json::Number::from_f64(x).map_or_else(|| x.to_string(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_lines() {
        let mut endpoint = EndpointView {
            name: "fraud-shadow".into(),
            model: "fraud".into(),
            arms: vec![ArmWeight {
                alias: "champion".into(),
                weight: 1.0,
            }],
            shadow: Some(ShadowShare {
                alias: "challenger".into(),
                fraction: 1.0,
            }),
        };
        assert_eq!(
            endpoint_line(&endpoint),
            "fraud-shadow\tmodel fraud\tarms champion=1.0\tshadow challenger=1.0"
        );
        endpoint.arms.push(ArmWeight {
            alias: "challenger".into(),
            weight: 12.5,
        });
        endpoint.shadow = None;
        assert_eq!(
            endpoint_line(&endpoint),
            "fraud-shadow\tmodel fraud\tarms champion=1.0 challenger=12.5\tshadow -"
        );
    }

    #[test]
    fn requests_from_flags() {
        let arms = ["champion=90".to_string(), "challenger=10".to_string()];
        let request = traffic_request(&arms, Some("candidate=0.2"), false).unwrap();
        assert_eq!(request.arms[1].weight, 10.0);
        assert_eq!(
            request.shadow,
            Some(Some(ShadowShare {
                alias: "candidate".into(),
                fraction: 0.2
            }))
        );
        assert_eq!(
            traffic_request(&arms, None, true).unwrap().shadow,
            Some(None)
        );
        assert_eq!(traffic_request(&arms, None, false).unwrap().shadow, None);
        assert!(traffic_request(&["champion".to_string()], None, false).is_err());
    }
}
