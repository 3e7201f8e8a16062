//! What makes a traffic policy valid for a model: the one check that the
//! endpoints file, the admin API and the experiment loop all apply before
//! an endpoint's arms change.

use crate::registry::{validate_alias_name, LATEST};

use super::{Arm, Shadow};

/// Shadow copies one endpoint may have in flight when its shadow names no
/// `max_in_flight`.
pub const DEFAULT_SHADOW_IN_FLIGHT: usize = 16;

/// Checks a traffic policy over `model`'s `aliases`: at least one arm, no
/// arm twice, weights 0 or more and not all 0 (checked by `Endpoint::new`),
/// every alias known (or `latest`), a shadow fraction in [0, 1] and room
/// for at least one shadow call.
/// `aliases` None: the registry cannot be asked now, so only the alias names
/// are checked (an alias that does not exist answers 404 until it is set).
pub fn check_traffic(
    model: &str,
    aliases: Option<&[String]>,
    arms: &[Arm],
    shadow: Option<&Shadow>,
) -> Result<(), String> {
    let check_alias = |alias: &str| -> Result<(), String> {
        if alias.eq_ignore_ascii_case(LATEST) {
            return Ok(());
        }
        let Some(aliases) = aliases else {
            return validate_alias_name(alias).map_err(|e| e.to_string());
        };
        if aliases.iter().any(|a| a == alias) {
            return Ok(());
        }
        validate_alias_name(alias).map_err(|e| e.to_string())?;
        Err(format!(
            "model \"{model}\" has no alias \"{alias}\" (its aliases: {}); set it with `podium alias set {model} {alias} N`",
            if aliases.is_empty() { "none".into() } else { aliases.join(", ") },
        ))
    };
    if arms.is_empty() {
        return Err("has no arms; add arms = [{ alias = \"champion\", weight = 100 }]".into());
    }
    for (i, arm) in arms.iter().enumerate() {
        check_alias(&arm.alias)?;
        if !(arm.weight >= 0.0 && arm.weight.is_finite()) {
            return Err(format!(
                "arm \"{}\" has weight {}; weights must be 0 or more",
                arm.alias, arm.weight
            ));
        }
        if arms[..i].iter().any(|a| a.alias == arm.alias) {
            return Err(format!("arm \"{}\" is listed twice", arm.alias));
        }
    }
    if let Some(s) = shadow {
        check_alias(&s.alias)?;
        if !(0.0..=1.0).contains(&s.fraction) {
            return Err(format!(
                "shadow fraction {} is not between 0 and 1",
                s.fraction
            ));
        }
        if s.max_in_flight == 0 {
            return Err(format!(
                "shadow max_in_flight is 0, so no copy to \"{}\" could ever be sent; allow at least 1 (the default is {}), or remove the shadow",
                s.alias,
                DEFAULT_SHADOW_IN_FLIGHT
            ));
        }
    }
    Ok(())
}
