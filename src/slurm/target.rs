//! Where a job runs: `"target": {"cluster": …, "partition", "gpus", …}` in its config
//! (SPEC §8), checked when the job is created so that a typo is a 422 naming the field, not a
//! batch script SLURM refuses later. Every value lands in a `#SBATCH` line or the script, so
//! each is held to a plain form a shell reads as one word.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    config::{ClusterConfig, Config, plain_name},
    job_types::{ConfigError, parse_config},
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// One of `config.toml`'s `[[clusters]]`.
    pub cluster: String,
    pub partition: Option<String>,
    /// `"a100:2"` (type and count) or `"2"`.
    pub gpus: Option<String>,
    pub cpus: Option<u32>,
    /// SLURM's form: `"16G"`, `"4000M"`, `"2000"` (MB).
    pub mem: Option<String>,
    /// SLURM's form: minutes, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`.
    pub time: Option<String>,
    pub nodes: Option<u32>,
    pub account: Option<String>,
    pub container: Option<Container>,
    /// A conda environment activated before the job runs.
    pub conda_env: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Container {
    /// The image on the cluster (`…/image.sif`).
    pub image: String,
    #[serde(default)]
    pub runtime: Runtime,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    #[default]
    Apptainer,
    Singularity,
}

impl Runtime {
    pub fn command(self) -> &'static str {
        match self {
            Runtime::Apptainer => "apptainer",
            Runtime::Singularity => "singularity",
        }
    }
}

/// The target of a job config, if it has one; a malformed one names its field
/// (`target.gpus`, …), an unknown cluster names `target.cluster`.
pub fn of_config(config: &Value, settings: &Config) -> Result<Option<Target>, ConfigError> {
    let Some(raw) = config.get("target").filter(|t| !t.is_null()) else {
        return Ok(None);
    };
    let t: Target = parse_config(raw).map_err(|e| ConfigError {
        field: if e.field.is_empty() {
            "target".into()
        } else {
            format!("target.{}", e.field)
        },
        message: e.message,
    })?;
    let bad = |field: &str, message: String| ConfigError::new(format!("target.{field}"), message);
    settings.cluster(&t.cluster).ok_or_else(|| {
        let known: Vec<&str> = settings.clusters.iter().map(|c| c.name.as_str()).collect();
        bad(
            "cluster",
            if known.is_empty() {
                format!("no cluster {:?}: config.toml declares none", t.cluster)
            } else {
                format!(
                    "no cluster {:?} (config.toml declares {known:?})",
                    t.cluster
                )
            },
        )
    })?;
    for (field, value) in [
        ("partition", &t.partition),
        ("account", &t.account),
        ("conda_env", &t.conda_env),
    ] {
        if let Some(v) = value
            && !plain_name(v)
        {
            return Err(bad(
                field,
                format!("{v:?} is not a name (1–64 letters, digits, '_', '-', '.', '+')"),
            ));
        }
    }
    if let Some(g) = &t.gpus {
        gpus(g).map_err(|m| bad("gpus", m))?;
    }
    if let Some(m) = &t.mem
        && !mem(m)
    {
        return Err(bad(
            "mem",
            format!("{m:?} is not a memory size such as \"16G\", \"4000M\" or \"2000\""),
        ));
    }
    if let Some(time) = &t.time {
        minutes(time).map_err(|m| bad("time", m))?;
    }
    for (field, n) in [("cpus", t.cpus), ("nodes", t.nodes)] {
        if n == Some(0) {
            return Err(bad(field, "must be at least 1".into()));
        }
    }
    if let Some(c) = &t.container
        && (c.image.trim().is_empty()
            || c.image
                .chars()
                .any(|ch| ch.is_control() || "'\"`$\\".contains(ch)))
    {
        return Err(bad(
            "container.image",
            format!("{:?} is not an image path", c.image),
        ));
    }
    Ok(Some(t))
}

/// `"2"` or `"a100:2"`: (type, count).
pub fn gpus(s: &str) -> Result<(Option<&str>, u32), String> {
    let (kind, count) = match s.rsplit_once(':') {
        Some((k, n)) => (Some(k), n),
        None => (None, s),
    };
    if let Some(k) = kind
        && !plain_name(k)
    {
        return Err(format!("{k:?} is not a GPU type"));
    }
    match count.parse::<u32>() {
        Ok(n) if (1..=64).contains(&n) => Ok((kind, n)),
        _ => Err(format!(
            "{s:?} is not \"N\" or \"TYPE:N\" with N from 1 to 64"
        )),
    }
}

fn mem(s: &str) -> bool {
    let digits = s.trim_end_matches(['K', 'M', 'G', 'T']);
    s.len() - digits.len() <= 1
        && !digits.is_empty()
        && digits.len() <= 9
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// SLURM's time forms, in minutes (seconds rounded up).
pub fn minutes(s: &str) -> Result<u64, String> {
    let err = || {
        format!("{s:?} is not a SLURM time (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS)")
    };
    let num = |p: &str| {
        (!p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u64>().ok())
            .flatten()
            .ok_or_else(err)
    };
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (Some(num(d)?), r),
        None => (None, s),
    };
    let parts: Vec<u64> = rest.split(':').map(num).collect::<Result<_, _>>()?;
    let seconds = match (days, parts.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) => h * 3600 + m * 60 + s,
        (Some(d), [h]) => d * 86400 + h * 3600,
        (Some(d), [h, m]) => d * 86400 + h * 3600 + m * 60,
        (Some(d), [h, m, s]) => d * 86400 + h * 3600 + m * 60 + s,
        _ => return Err(err()),
    };
    if seconds == 0 {
        return Err(format!("{s:?} is no time at all"));
    }
    Ok(seconds.div_ceil(60))
}

/// The settings a submission uses: the target's, else the cluster's defaults.
pub fn or_default<'a>(value: &'a Option<String>, default: &'a str) -> Option<&'a str> {
    value
        .as_deref()
        .or((!default.is_empty()).then_some(default))
}

/// The cluster a target names (checked at create; gone only if config.toml changed since).
pub fn cluster<'a>(t: &Target, settings: &'a Config) -> Result<&'a ClusterConfig, String> {
    settings
        .cluster(&t.cluster)
        .ok_or_else(|| format!("cluster {:?} is no longer in config.toml", t.cluster))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_times_read_as_slurm_reads_them() {
        assert_eq!(minutes("90"), Ok(90));
        assert_eq!(minutes("1:30"), Ok(2));
        assert_eq!(minutes("2:00:00"), Ok(120));
        assert_eq!(minutes("1-2"), Ok(26 * 60));
        assert_eq!(minutes("1-0:30:00"), Ok(24 * 60 + 30));
        for bad in ["", "0", "1h", "1:2:3:4", "-5", "1-", "1; rm -rf ~"] {
            assert!(minutes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn gpus_are_a_count_with_an_optional_type() {
        assert_eq!(gpus("2"), Ok((None, 2)));
        assert_eq!(gpus("a100:1"), Ok((Some("a100"), 1)));
        for bad in ["0", "a100", "a100:", "x y:1", "65", "$(x):1"] {
            assert!(gpus(bad).is_err(), "{bad}");
        }
        assert!(mem("16G") && mem("2000") && !mem("16GB") && !mem("G") && !mem("1;x"));
    }
}
