//! `podium promote ENDPOINT [--if-better | --if-not-worse] --server URL`:
//! the manual end of an online experiment, through the running server's
//! readout (`POST /admin/experiments/{endpoint}/promote`). The server
//! refuses, with the readout's reason, when the condition does not hold.

use clap::Args;

use super::admin_client::Remote;

#[derive(Args)]
pub struct PromoteArgs {
    /// The endpoint whose experiment concludes.
    endpoint: String,
    /// Promote only when the readout's decision is `better` [the default].
    #[arg(long, conflicts_with = "if_not_worse")]
    if_better: bool,
    /// Promote when the readout has enough data and does not say `worse`.
    #[arg(long)]
    if_not_worse: bool,
    #[command(flatten)]
    remote: Remote,
}

impl PromoteArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let Some(admin) = self.remote.client()? else {
            anyhow::bail!(
                "promotion reads the live readout of a running server: add --server http://HOST:PORT (or PODIUM_SERVER)"
            );
        };
        let condition = if self.if_not_worse {
            "not_worse"
        } else {
            "better"
        };
        let _ = self.if_better; // the default condition
        let answer = admin.promote(&self.endpoint, condition)?;
        let text = |key: &str| answer[key].as_str().unwrap_or("?").to_string();
        println!(
            "promoted: endpoint {} arm {} (decision {}, diff {}, p-value {}): {}@{} now serves version {} (was {})",
            self.endpoint,
            text("arm"),
            text("decision"),
            answer["diff"],
            answer["p_value"],
            answer["swap"]["model"].as_str().unwrap_or("?"),
            text("baseline"),
            answer["swap"]["version"],
            answer["swap"]["from_version"],
        );
        if let Some(warnings) = answer["warnings"].as_array() {
            for w in warnings {
                eprintln!("warning: {}", w.as_str().unwrap_or_default());
            }
        }
        Ok(())
    }
}
