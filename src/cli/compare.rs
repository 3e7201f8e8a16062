//! `podium compare`: the champion and the challenger on a held-out file;
//! with `--promote-if-better`, the champion alias moves when the challenger
//! wins (through a running server when `--server` is given), and the
//! comparison is kept in the alias history (and as MLflow version tags).

use std::path::PathBuf;

use clap::Args;

use super::admin_client::{AdminClient, Remote, SetAliasRequest};
use super::batch::ScoringArgs;
use crate::offline::compare::{CompareJob, Comparison, Decision, CONFIDENCE};
use crate::offline::metrics::Metric;
use crate::registry::{resolve, validate_model_name, Registry, RegistryConfig, VersionSpec};
use crate::serving::history::{self, Change};
use crate::serving::{ComparisonRecord, Event, History};

#[derive(Args)]
pub struct CompareArgs {
    /// The registered model whose aliases are compared.
    model: String,
    /// The held-out file: *.parquet, or *.csv with a header row.
    #[arg(long, env = "PODIUM_COMPARE_DATA")]
    data: PathBuf,
    /// The column holding the true label (class index) or target value.
    #[arg(long, env = "PODIUM_COMPARE_LABEL")]
    label: String,
    /// The alias of the version in place.
    #[arg(long, env = "PODIUM_COMPARE_CHAMPION", default_value = "champion")]
    champion: String,
    /// The alias of the version that may replace it.
    #[arg(long, env = "PODIUM_COMPARE_CHALLENGER", default_value = "challenger")]
    challenger: String,
    /// accuracy, log_loss, roc_auc, rmse or mae [default: accuracy for a
    /// classifier, rmse otherwise].
    #[arg(long, env = "PODIUM_COMPARE_METRIC")]
    metric: Option<Metric>,
    /// The model output the metric reads [default: see README, "The offline side"].
    #[arg(long, env = "PODIUM_COMPARE_PREDICTION")]
    prediction: Option<String>,
    /// Paired-bootstrap resamples for the 95% interval of the difference.
    #[arg(long, env = "PODIUM_COMPARE_BOOTSTRAP", default_value_t = 1000)]
    bootstrap: usize,
    /// Seed of the bootstrap: the same seed and data give the same interval.
    #[arg(long, env = "PODIUM_COMPARE_SEED", default_value_t = 0)]
    seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long, env = "PODIUM_COMPARE_JSON")]
    json: bool,
    /// Point the champion alias at the challenger's version when the
    /// decision is "better", and record the comparison in the alias history.
    #[arg(long, env = "PODIUM_PROMOTE_IF_BETTER")]
    promote_if_better: bool,
    /// The alias history file [default: REGISTRY/.podium-history.jsonl, or
    /// CACHE_DIR/.podium-history.jsonl with MLflow].
    #[arg(long, env = "PODIUM_HISTORY_FILE")]
    history_file: Option<PathBuf>,
    #[command(flatten)]
    remote: Remote,
    #[command(flatten)]
    scoring: ScoringArgs,
}

impl CompareArgs {
    /// Compares, prints the result to stdout, and promotes when asked and
    /// earned. Any decision is a success; bad input is an error.
    pub fn run(self, config: &RegistryConfig, registry: &dyn Registry) -> anyhow::Result<()> {
        validate_model_name(&self.model)?;
        anyhow::ensure!(
            self.champion != self.challenger,
            "--champion and --challenger both name alias \"{}\"; compare two aliases",
            self.champion
        );
        let admin = self.remote.client()?;
        let champion_version = self.version(admin.as_ref(), registry, &self.champion)?;
        let challenger_version = self.version(admin.as_ref(), registry, &self.challenger)?;
        if champion_version == challenger_version {
            eprintln!(
                "note: {}@{} and @{} are both version {champion_version}",
                self.model, self.champion, self.challenger
            );
        }
        let champion = self
            .scoring
            .scorer(registry, &self.model, champion_version)?;
        let challenger = self
            .scoring
            .scorer(registry, &self.model, challenger_version)?;
        let job = CompareJob {
            input: self.data.clone(),
            label: self.label.clone(),
            metric: self.metric,
            prediction: self.prediction.clone(),
            features: self.scoring.features.clone(),
            batch_size: self.scoring.batch_size,
            bootstrap: self.bootstrap,
            seed: self.seed,
            threads: self.scoring.threads(),
        };
        let mut comparison = job.run(&champion, &challenger)?;
        // The numbers are printed even when moving the alias fails.
        let promotion = match self.promote_if_better {
            true => self.promote(config, registry, admin.as_ref(), &mut comparison),
            false => Ok(()),
        };
        if self.json {
            println!("{}", serde_json::to_string(&comparison)?);
        } else {
            print!("{}", self.render(&comparison));
        }
        promotion
    }

    /// The version `alias` names: as the server sees it with `--server`,
    /// else from the registry.
    fn version(
        &self,
        admin: Option<&AdminClient>,
        registry: &dyn Registry,
        alias: &str,
    ) -> anyhow::Result<u64> {
        match admin {
            Some(admin) => admin.aliases(&self.model)?.aliases.get(alias).copied().ok_or_else(|| {
                anyhow::anyhow!(
                    "model \"{}\" has no alias \"{alias}\" on {}; set it with `podium alias set {} {alias} N`",
                    self.model,
                    self.remote.server.as_deref().unwrap_or("the server"),
                    self.model
                )
            }),
            None => {
                let versions = registry.versions(&self.model)?;
                let aliases = registry.aliases(&self.model)?;
                Ok(resolve(&self.model, &VersionSpec::Alias(alias.to_string()), &versions, &aliases)?)
            }
        }
    }

    /// Moves the champion alias when the challenger is better; records the
    /// comparison in the history and, with MLflow, as version tags.
    fn promote(
        &self,
        config: &RegistryConfig,
        registry: &dyn Registry,
        admin: Option<&AdminClient>,
        comparison: &mut Comparison,
    ) -> anyhow::Result<()> {
        let (model, alias) = (&self.model, &self.champion);
        let to = comparison.challenger.version;
        let history = History::new(
            self.history_file
                .clone()
                .unwrap_or_else(|| history::default_path(config.state_dir())),
        );
        let mut event = Event::new(model, alias, history::action::COMPARE, "compare");
        event.from_version = Some(comparison.champion.version);
        event.to_version = Some(to);
        let moved = if comparison.decision != Decision::Better {
            eprintln!(
                "{model}@{alias} stays at version {}: the challenger is not better ({})",
                comparison.champion.version,
                comparison.decision.name()
            );
            Ok(())
        } else {
            let change = match admin {
                Some(admin) => admin
                    .set_alias(
                        model,
                        alias,
                        &SetAliasRequest {
                            version: to,
                            allow_signature_change: false,
                        },
                    )
                    .map(|swap| super::alias::swap_line(&swap)),
                None => registry
                    .set_alias(model, alias, to)
                    .map(|()| {
                        // Written as every alias move is (the admin API
                        // writes its own when --server is named).
                        let change = Change::AliasSet {
                            alias,
                            from: Some(comparison.champion.version),
                            to,
                            rollback: false,
                        };
                        history.record_change(model, change, "compare");
                        format!("{model}@{alias} -> version {to}")
                    })
                    .map_err(anyhow::Error::from),
            };
            change.map(|line| {
                comparison.promoted = true;
                eprintln!("promoted: {line}");
            })
        };
        if let Err(e) = &moved {
            event.result = history::outcome::FAILED.into();
            event.error = Some(format!("{e:#}"));
        }
        event.comparison = Some(ComparisonRecord {
            challenger_alias: self.challenger.clone(),
            metric: comparison.metric.clone(),
            rows: comparison.rows,
            champion_value: comparison.champion.value,
            challenger_value: comparison.challenger.value,
            diff: comparison.diff,
            ci_low: comparison.ci_low,
            ci_high: comparison.ci_high,
            decision: comparison.decision.name().to_string(),
            promoted: comparison.promoted,
        });
        history.record(&event);
        if registry.has_version_tags() {
            registry.set_version_tags(model, to, &self.tags(comparison))?;
        }
        moved
    }

    /// The challenger version's tags: the numbers, and
    /// `model_validation_status` PASSED (better) or FAILED.
    fn tags(&self, c: &Comparison) -> Vec<(String, String)> {
        let status = if c.decision == Decision::Better {
            "PASSED"
        } else {
            "FAILED"
        };
        [
            ("model_validation_status", status.to_string()),
            ("podium.compare.metric", c.metric.clone()),
            ("podium.compare.rows", c.rows.to_string()),
            ("podium.compare.champion_alias", self.champion.clone()),
            (
                "podium.compare.champion_version",
                c.champion.version.to_string(),
            ),
            (
                "podium.compare.champion_value",
                c.champion.value.to_string(),
            ),
            (
                "podium.compare.challenger_value",
                c.challenger.value.to_string(),
            ),
            ("podium.compare.diff", c.diff.to_string()),
            ("podium.compare.ci_low", c.ci_low.to_string()),
            ("podium.compare.ci_high", c.ci_high.to_string()),
            ("podium.compare.decision", c.decision.name().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn render(&self, c: &Comparison) -> String {
        let metric: Metric = c.metric.parse().unwrap_or(Metric::Accuracy);
        let direction = if metric.higher_is_better() {
            "higher"
        } else {
            "lower"
        };
        let verdict = match c.decision {
            Decision::Better => "the challenger is better",
            Decision::Worse => "the challenger is worse",
            Decision::NoDifference => "no difference at this confidence",
        };
        format!(
            "{model}: {metric} on {data} ({rows} rows; {direction} is better)\n\
             champion   {champion:<12} version {cv}: {cval:.6}\n\
             challenger {challenger:<12} version {chv}: {chval:.6}\n\
             difference (challenger - champion): {diff:+.6}, {conf:.0}% CI [{low:+.6}, {high:+.6}] (paired bootstrap, {n} resamples, seed {seed})\n\
             decision: {decision} ({verdict}){promoted}\n",
            model = self.model,
            data = self.data.display(),
            rows = c.rows,
            champion = format!("@{}", self.champion),
            challenger = format!("@{}", self.challenger),
            cv = c.champion.version,
            cval = c.champion.value,
            chv = c.challenger.version,
            chval = c.challenger.value,
            diff = c.diff,
            conf = CONFIDENCE * 100.0,
            low = c.ci_low,
            high = c.ci_high,
            n = self.bootstrap,
            seed = self.seed,
            decision = c.decision.name(),
            promoted = if c.promoted { "; promoted" } else { "" },
        )
    }
}
